"""Enhanced-alignment measure (E-measure) over 256 thresholds and at the adaptive threshold.

Fan, Gong, Cao, Ren, Cheng and Borji, "Enhanced-alignment Measure for Binary Foreground Map
Evaluation", IJCAI 2018. For a binary map the enhanced alignment matrix takes one value in each
of the four (prediction, GT) regions, so E is a weighted sum of four region sizes; the region
sizes at all thresholds come from the histogram counts of `thresholds.threshold_counts`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from autosod.evaluation.accumulator import Accumulator
from autosod.evaluation.thresholds import NUM_THRESHOLDS, adaptive_threshold, threshold_counts

__all__ = ["EmeasureAccumulator", "emeasure_from_counts"]

_EPS = np.spacing(1.0)  # MATLAB's eps, as in the reference implementation


def emeasure_from_counts(
    tp: np.ndarray, positives: np.ndarray, *, fg_pixels: int, num_pixels: int
) -> np.ndarray:
    """E-measure of binary maps from counts: tp, positives (T,) -> (T,) float64.

    tp: predicted-foreground pixels inside the GT foreground; positives: all predicted-foreground
    pixels; fg_pixels: GT foreground size; num_pixels: image size.
    """
    tp = tp.astype(np.float64)
    positives = positives.astype(np.float64)
    negatives = num_pixels - positives
    if fg_pixels == 0:
        total = negatives
    elif fg_pixels == num_pixels:
        total = positives
    else:
        pred_mean = positives / num_pixels
        gt_mean = fg_pixels / num_pixels
        fn = fg_pixels - tp
        regions = (  # (pixel count, demeaned prediction value, demeaned GT value)
            (tp, 1 - pred_mean, 1 - gt_mean),
            (positives - tp, 1 - pred_mean, -gt_mean),
            (fn, -pred_mean, 1 - gt_mean),
            (negatives - fn, -pred_mean, -gt_mean),
        )
        total = np.zeros_like(tp)
        for size, pred_value, gt_value in regions:
            align = 2 * pred_value * gt_value / (pred_value**2 + gt_value**2 + _EPS)
            total = total + (align + 1) ** 2 / 4 * size
    return total / (num_pixels - 1 + _EPS)


class EmeasureAccumulator(Accumulator):
    """Sums of per-image E-measure curves (256,) and of the adaptive-threshold E-measure.

    `max_e` and `mean_e` are the maximum and mean of the mean curve over thresholds.
    """

    STATE_SHAPES: ClassVar[dict[str, tuple[int, ...]]] = {
        "e_sum": (NUM_THRESHOLDS,),
        "adaptive_e_sum": (),
    }

    def update_normalized(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred (H, W) float64 in [0, 1]; gt (H, W) bool."""
        fg_pixels, num_pixels = int(np.count_nonzero(gt)), gt.size
        tp, positives = threshold_counts(pred, gt)
        curve = emeasure_from_counts(tp, positives, fg_pixels=fg_pixels, num_pixels=num_pixels)
        binary = pred >= adaptive_threshold(pred)
        adaptive = emeasure_from_counts(
            np.array([np.count_nonzero(binary & gt)]),
            np.array([np.count_nonzero(binary)]),
            fg_pixels=fg_pixels,
            num_pixels=num_pixels,
        )
        self._add(e_sum=curve, adaptive_e_sum=float(adaptive[0]))

    def curves(self) -> dict[str, np.ndarray]:
        """The mean E-measure curve `e` (256,), index = threshold."""
        self._require_images()
        return {"e": self._state["e_sum"] / self.count}

    def compute(self) -> dict[str, float]:
        curve = self.curves()["e"]
        return {
            "max_e": float(curve.max()),
            "mean_e": float(curve.mean()),
            "adaptive_e": float(self._state["adaptive_e_sum"] / self.count),
        }
