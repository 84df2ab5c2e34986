"""The one place that reaches Ray for every job (labelling, evaluation, training, prediction).

`ray_session(address, num_gpus=...)` joins the given cluster, or the job's cluster under `ray job
submit` (`RAY_ADDRESS`), or starts single-node Ray; it shuts down only a Ray it started itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

__all__ = ["connect", "ray_session"]

logger = logging.getLogger(__name__)


def connect(address: str | None = None, *, num_gpus: int | None = None) -> tuple[str, bool]:
    """Reach Ray; returns (how it was reached, whether this call started or joined it).

    `num_gpus` applies only when starting single-node Ray: logical GPUs on a machine without
    any, so that GPU-shaped actor plans can run (and be tested) on a CPU.
    """
    if ray.is_initialized():
        return "already connected", False
    if address:
        ray.init(address=address)
        how = f"joined the cluster at {address}"
    elif os.environ.get("RAY_ADDRESS"):
        ray.init()
        how = f"joined the job's cluster at {os.environ['RAY_ADDRESS']}"
    else:
        ray.init(num_gpus=num_gpus)
        how = "started single-node Ray" + (f" with {num_gpus} logical GPU(s)" if num_gpus else "")
    logger.info("%s; resources %s", how, ray.cluster_resources())
    return how, True


@contextmanager
def ray_session(address: str | None = None, *, num_gpus: int | None = None) -> Iterator[str]:
    """`connect`, yield how Ray was reached, and shut Ray down on exit if this call reached it."""
    how, started = connect(address, num_gpus=num_gpus)
    try:
        yield how
    finally:
        if started:
            ray.shutdown()
