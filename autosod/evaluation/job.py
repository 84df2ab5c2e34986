"""The evaluation over Ray Data: pairs -> per-batch `SodMetrics` state -> merged on the driver.

A thin shell around `autosod.evaluation`: workers run `evaluate_batch` on folder pairs, or
`evaluate_store_parts` on the committed parts of a mask store (read, resize, update one
accumulator per batch), and return only the fixed-size accumulator state (plus, for a store, the
stems they met); the driver merges the states. Same numbers as `autosod evaluate`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import ray

from autosod.evaluation.evaluate import EvaluationResult, evaluate_batch, result_from
from autosod.evaluation.metrics import SodMetrics
from autosod.evaluation.pairing import Pairing, gt_folder, list_by_stem, pair_folders
from autosod.evaluation.store_source import evaluate_store_parts, is_store, merge_part_reports
from autosod.io.store.mask_store import MaskStore
from autosod.ray_connection import connect

__all__ = ["EvaluationJobConfig", "run_evaluation_job"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EvaluationJobConfig:
    """What to evaluate and where: `pred` folder of `<stem>.png` or mask store, `gt` benchmark
    folder."""

    pred: str
    gt: str
    name: str | None = None
    storage_options: dict | None = None
    address: str | None = None  # Ray address; default: the job's cluster or a local one
    batch_size: int = 64  # pairs per Ray Data batch

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def _merge(states: ray.data.Dataset) -> tuple[SodMetrics, list[dict]]:
    """Merge the per-batch accumulator states; collect the store batches' pairing reports."""
    metrics, reports = SodMetrics(), []
    for state in states.iter_rows():
        report = state.pop("pairing_json", None)
        if report is not None:
            reports.append(json.loads(str(report)))
        metrics.merge(SodMetrics().load_state(state))
    return metrics, reports


def _folder_states(config: EvaluationJobConfig) -> tuple[ray.data.Dataset, Pairing]:
    pairing = pair_folders(config.pred, config.gt, config.storage_options)
    items = [{"stem": p.stem, "pred_uri": p.pred_uri, "gt_uri": p.gt_uri} for p in pairing.pairs]
    states = ray.data.from_items(items).map_batches(
        evaluate_batch,
        batch_size=config.batch_size,
        batch_format="numpy",
        fn_kwargs={"storage_options": config.storage_options},
    )
    return states, pairing


def _store_states(config: EvaluationJobConfig) -> tuple[ray.data.Dataset, dict[str, str]]:
    """One item per committed part (each carries its own part); workers read their parts, the
    driver reads only the commit log."""
    store = MaskStore.open(config.pred, storage_options=config.storage_options)
    gts = list_by_stem(gt_folder(config.gt, config.storage_options), config.storage_options)
    if not gts:
        raise ValueError(f"no mask images found in the benchmark folder {config.gt!r}")
    items = [part.to_item() for part in store.parts()]
    states = ray.data.from_items(items).map_batches(
        evaluate_store_parts,
        batch_size=1,  # a part holds thousands of rows
        batch_format="numpy",
        fn_kwargs={
            "store": store,
            "gts": gts,
            "storage_options": config.storage_options,
        },
    )
    return states, gts


def run_evaluation_job(config: EvaluationJobConfig) -> EvaluationResult:
    """Evaluate `config.pred` (PNG folder or mask store) against `config.gt` over Ray Data."""
    from_store = is_store(config.pred, config.storage_options)
    connect(config.address)  # stays up for the caller's next evaluation (several --pred)
    if from_store:
        states, gts = _store_states(config)
        metrics, reports = _merge(states)
        pairing = merge_part_reports(reports, gts)
    else:
        states, pairing = _folder_states(config)
        metrics, _ = _merge(states)
    pairing.log()
    name = config.name or config.pred.rstrip("/").rsplit("/", 1)[-1]
    result = result_from(metrics, pairing, name)
    if from_store:
        result.pairing["matched"] = metrics.count
    return result
