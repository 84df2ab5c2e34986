"""The one place that reaches Ray for every job (labelling, evaluation, training, prediction).

`ray_session(address, num_gpus=...)` joins the given cluster, or the job's cluster under `ray job
submit` (`RAY_ADDRESS`), or starts single-node Ray; it shuts down only a Ray it started itself.

Single-node Ray keeps more idle workers alive (`workers_soft_limit`) than Ray's default (one per
CPU, the pipeline's actors counted): on a small node whose actors hold most CPUs, every decode or
encode task after an idle second started a fresh Python process, imports included (on 2 cores,
one every ~5 s of a labelling run). Clusters started with `ray start` take the same setting from
the `RAY_num_workers_soft_limit` environment variable (cluster/README.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

__all__ = ["SOFT_LIMIT_ENV", "connect", "ray_session", "workers_soft_limit"]

logger = logging.getLogger(__name__)

# idle task workers kept beyond one per CPU: room for the actors of a node (up to one per CPU)
# and the workers of the pipeline's fractional-CPU tasks
WORKERS_SOFT_LIMIT_EXTRA = 8
SOFT_LIMIT_ENV = "RAY_num_workers_soft_limit"  # read by the raylet that ray.init starts


def workers_soft_limit(cpus: int | None = None) -> int:
    """Worker processes single-node Ray keeps alive when idle (Ray's default: the CPU count)."""
    return (cpus if cpus is not None else os.cpu_count() or 1) + WORKERS_SOFT_LIMIT_EXTRA


@contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """`name=value` in this process's environment (a value the user set wins), then restored."""
    before = os.environ.get(name)
    os.environ.setdefault(name, value)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)


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
        with _environ(SOFT_LIMIT_ENV, str(workers_soft_limit())):
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
