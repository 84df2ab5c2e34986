"""The evaluation over Ray Data: pairs -> per-batch `SodMetrics` state -> merged on the driver.

A thin shell around `autosod.evaluation`: workers run `evaluate_batch` (read, resize, update one
accumulator per batch) and return only the fixed-size accumulator state; the driver merges the
states, so nothing per image is collected. Same numbers as `autosod evaluate`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import ray

from autosod.evaluation.evaluate import EvaluationResult, evaluate_batch, result_from
from autosod.evaluation.metrics import SodMetrics
from autosod.evaluation.pairing import pair_folders
from autosod.evaluation.store_source import is_store

__all__ = ["EvaluationJobConfig", "run_evaluation_job"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EvaluationJobConfig:
    """What to evaluate and where: `pred` folder of `<stem>.png`, `gt` benchmark folder."""

    pred: str
    gt: str
    name: str | None = None
    storage_options: dict | None = None
    address: str | None = None  # Ray address; default: the job's cluster or a local one
    batch_size: int = 64  # pairs per Ray Data batch

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def _connect(address: str | None) -> None:
    if ray.is_initialized():
        return
    # an explicit address, else the job's cluster under `ray job submit` (RAY_ADDRESS), else local
    ray.init(address=address or os.environ.get("RAY_ADDRESS"))
    logger.info("Ray resources: %s", ray.cluster_resources())


def run_evaluation_job(config: EvaluationJobConfig) -> EvaluationResult:
    """Evaluate `config.pred` against `config.gt` over Ray Data; returns the run's result."""
    if is_store(config.pred, config.storage_options):
        raise ValueError(
            f"{config.pred} is a mask store; the Ray job reads PNG folders. Run "
            "`autosod evaluate` (it streams the store) or `autosod export` the store first"
        )
    pairing = pair_folders(config.pred, config.gt, config.storage_options)
    pairing.log()
    _connect(config.address)
    items = [{"stem": p.stem, "pred_uri": p.pred_uri, "gt_uri": p.gt_uri} for p in pairing.pairs]
    states = ray.data.from_items(items).map_batches(
        evaluate_batch,
        batch_size=config.batch_size,
        batch_format="numpy",
        fn_kwargs={"storage_options": config.storage_options},
    )
    metrics = SodMetrics()
    for state in states.iter_rows():
        metrics.merge(SodMetrics().load_state(state))
    name = config.name or config.pred.rstrip("/").rsplit("/", 1)[-1]
    return result_from(metrics, pairing, name)
