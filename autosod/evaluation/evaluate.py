"""Entry points: evaluate pairs, a prediction folder, or a mask store against a benchmark folder.

Images stream through one `SodMetrics` accumulator, so memory stays constant in the number of
images; each prediction is resized (bilinear) to its ground truth's size before the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autosod.evaluation.metrics import SodMetrics
from autosod.evaluation.pairing import Pair, Pairing, pair_folders, read_gray
from autosod.evaluation.validate import resize_to

__all__ = [
    "EvaluationResult",
    "evaluate_batch",
    "evaluate_folder",
    "evaluate_pairs",
    "fit_to_gt",
    "load_pair",
    "result_from",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationResult:
    """One run: `metrics` (count, every scalar), mean `curves` (256,), the `pairing` report."""

    name: str
    metrics: dict[str, float]
    curves: dict[str, np.ndarray]
    pairing: dict[str, Any] = field(default_factory=dict)


def fit_to_gt(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pred (h, w) uint8 resized (bilinear) to gt's (H, W); other inputs pass unchanged."""
    if pred.dtype == np.uint8 and pred.ndim == 2 and gt.ndim == 2 and pred.shape != gt.shape:
        pred = resize_to(pred, gt.shape)
    return pred, gt


def evaluate_pairs(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], metrics: SodMetrics | None = None
) -> SodMetrics:
    """Stream (pred, gt) pairs into `metrics` (a new `SodMetrics` when None) and return it.

    pred (h, w) uint8 is resized to gt's (H, W) first; see `validate_pair` for the accepted types.
    """
    metrics = SodMetrics() if metrics is None else metrics
    for pred, gt in pairs:
        metrics.update(*fit_to_gt(pred, gt))
    return metrics


def load_pair(pair: Pair, storage_options: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one pair: pred resized to the GT size, (H, W) uint8 each."""
    gt = read_gray(pair.gt_uri, storage_options)
    return fit_to_gt(read_gray(pair.pred_uri, storage_options), gt)


def result_from(metrics: SodMetrics, pairing: Pairing, name: str) -> EvaluationResult:
    """An `EvaluationResult` from a filled accumulator and the pairing it came from."""
    if metrics.count == 0:
        raise ValueError(
            f"no prediction matched a ground-truth mask for run {name!r} "
            f"({len(pairing.missing)} masks without prediction, {len(pairing.extra)} "
            "predictions without mask); check that files are named <image stem>.png"
        )
    return EvaluationResult(name, metrics.compute(), metrics.curves(), pairing.report())


def evaluate_folder(
    pred_dir: str,
    benchmark: str,
    *,
    name: str | None = None,
    storage_options: dict | None = None,
) -> EvaluationResult:
    """Evaluate a folder of `<stem>.png` predictions against a benchmark folder's masks."""
    pairing = pair_folders(pred_dir, benchmark, storage_options)
    pairing.log()
    loaded = (load_pair(pair, storage_options) for pair in pairing.pairs)
    metrics = evaluate_pairs(loaded)
    logger.info("evaluated %d pairs from %s", metrics.count, pred_dir)
    return result_from(metrics, pairing, name or _run_name(pred_dir))


def evaluate_batch(
    batch: dict[str, np.ndarray], storage_options: dict | None = None
) -> dict[str, np.ndarray]:
    """A batch of pairs (`stem`, `pred_uri`, `gt_uri` columns) -> its `SodMetrics.state()`,
    each array with a leading axis of length 1 (one row per batch, merged by the caller)."""
    pairs = (
        Pair(str(stem), str(pred_uri), str(gt_uri))
        for stem, pred_uri, gt_uri in zip(
            batch["stem"], batch["pred_uri"], batch["gt_uri"], strict=True
        )
    )
    metrics = evaluate_pairs(load_pair(pair, storage_options) for pair in pairs)
    return {key: np.asarray(value)[None] for key, value in metrics.state().items()}


def _run_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1] or uri
