"""Structure measure (S-measure): object-aware and region-aware structural similarity.

Fan, Cheng, Liu, Li and Borji, "Structure-measure: A new way to evaluate foreground maps",
ICCV 2017. S = alpha * S_object + (1 - alpha) * S_region, alpha = 0.5.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from autosod.evaluation.accumulator import Accumulator

__all__ = ["SmeasureAccumulator", "structure_measure"]

_EPS = np.spacing(1.0)  # MATLAB's eps, as in the reference implementation


def structure_measure(pred: np.ndarray, gt: np.ndarray, *, alpha: float) -> float:
    """S-measure of one image: pred (H, W) float64 in [0, 1], gt (H, W) bool -> float in [0, 1].

    An all-background GT scores 1 - mean(pred), an all-foreground GT scores mean(pred).
    """
    fg_fraction = float(gt.mean())
    if fg_fraction == 0:
        return float(1 - pred.mean())
    if fg_fraction == 1:
        return float(pred.mean())
    object_score = fg_fraction * _object_similarity(pred[gt]) + (1 - fg_fraction) * (
        _object_similarity(1 - pred[~gt])
    )
    score = alpha * object_score + (1 - alpha) * _region_similarity(pred, gt)
    return max(0.0, float(score))


def _object_similarity(values: np.ndarray) -> float:
    """values (N,) of one region -> 2 mean / (mean^2 + 1 + std), std with N - 1 (0 when N = 1)."""
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return 2 * mean / (mean**2 + 1 + std + _EPS)


def _region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """Area-weighted SSIM of the four blocks split at the GT foreground centroid."""
    height, width = gt.shape
    rows, cols = np.nonzero(gt)
    # The split index is the rounded centroid plus one (MATLAB's inclusive 1:X ranges).
    split_y = int(np.round(rows.mean())) + 1
    split_x = int(np.round(cols.mean())) + 1
    total = 0.0
    for ys in (slice(0, split_y), slice(split_y, height)):
        for xs in (slice(0, split_x), slice(split_x, width)):
            block_pred, block_gt = pred[ys, xs], gt[ys, xs]
            if block_pred.size == 0:
                continue  # a zero-area block has zero weight
            weight = block_pred.size / gt.size
            total += weight * _ssim(block_pred, block_gt.astype(np.float64))
    return total


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Single-window SSIM of one block: pred, gt (h, w) float64 -> float."""
    n = pred.size
    pred_mean, gt_mean = float(pred.mean()), float(gt.mean())
    pred_dev, gt_dev = pred - pred_mean, gt - gt_mean
    pred_var = float(np.sum(pred_dev**2)) / (n - 1 + _EPS)
    gt_var = float(np.sum(gt_dev**2)) / (n - 1 + _EPS)
    covariance = float(np.sum(pred_dev * gt_dev)) / (n - 1 + _EPS)
    numerator = 4 * pred_mean * gt_mean * covariance
    denominator = (pred_mean**2 + gt_mean**2) * (pred_var + gt_var)
    if numerator != 0:
        return numerator / (denominator + _EPS)
    return 1.0 if denominator == 0 else 0.0


class SmeasureAccumulator(Accumulator):
    """Sum of per-image S-measures; `s_measure` is their mean."""

    STATE_SHAPES: ClassVar[dict[str, tuple[int, ...]]] = {"s_sum": ()}

    def __init__(self, *, alpha: float = 0.5) -> None:
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        super().__init__()

    def settings(self) -> dict[str, float]:
        return {"alpha": self.alpha}

    def update_normalized(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred (H, W) float64 in [0, 1]; gt (H, W) bool."""
        self._add(s_sum=structure_measure(pred, gt, alpha=self.alpha))

    def compute(self) -> dict[str, float]:
        self._require_images()
        return {"s_measure": float(self._state["s_sum"] / self.count)}
