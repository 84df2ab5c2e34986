"""Precision, recall and F-measure over 256 thresholds, plus the adaptive-threshold F-measure.

F_beta = (1 + beta2) P R / (beta2 P + R) with beta2 = 0.3: Achanta, Hemami, Estrada and
Suesstrunk, "Frequency-tuned salient region detection", CVPR 2009.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from autosod.evaluation.accumulator import BetaAccumulator
from autosod.evaluation.thresholds import NUM_THRESHOLDS, adaptive_threshold, threshold_counts

__all__ = ["FmeasureAccumulator", "f_beta"]


def f_beta(precision: np.ndarray, recall: np.ndarray, *, beta2: float) -> np.ndarray:
    """Elementwise F_beta of precision and recall (any equal shapes); 0 where P R = 0."""
    numerator = (1 + beta2) * precision * recall
    denominator = beta2 * precision + recall
    safe = np.where(numerator == 0, 1.0, denominator)
    return np.where(numerator == 0, 0.0, numerator / safe)


class FmeasureAccumulator(BetaAccumulator):
    """Sums of per-image precision, recall and F curves (256,) and of the adaptive F-measure.

    `max_f` and `mean_f` are the maximum and mean over thresholds of F computed from the
    dataset-mean precision and recall curves (the convention of published SOD tables);
    `max_f_per_image` and `mean_f_per_image` use the mean of per-image F curves instead.
    Precision is 0 at a threshold that keeps no pixel; recall is 0 when the GT is empty.
    """

    STATE_SHAPES: ClassVar[dict[str, tuple[int, ...]]] = {
        "precision_sum": (NUM_THRESHOLDS,),
        "recall_sum": (NUM_THRESHOLDS,),
        "f_sum": (NUM_THRESHOLDS,),
        "adaptive_f_sum": (),
    }

    DEFAULT_BETA2: ClassVar[float] = 0.3

    def update_normalized(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred (H, W) float64 in [0, 1]; gt (H, W) bool."""
        tp, positives = threshold_counts(pred, gt)
        precision = tp / np.maximum(positives, 1)
        recall = tp / max(int(np.count_nonzero(gt)), 1)
        self._add(
            precision_sum=precision,
            recall_sum=recall,
            f_sum=f_beta(precision, recall, beta2=self.beta2),
            adaptive_f_sum=self._adaptive_f(pred, gt),
        )

    def _adaptive_f(self, pred: np.ndarray, gt: np.ndarray) -> float:
        binary = pred >= adaptive_threshold(pred)
        intersection = np.count_nonzero(binary & gt)
        if intersection == 0:
            return 0.0
        precision = intersection / np.count_nonzero(binary)
        recall = intersection / np.count_nonzero(gt)
        return float(f_beta(np.float64(precision), np.float64(recall), beta2=self.beta2))

    def curves(self) -> dict[str, np.ndarray]:
        """Mean `precision`, `recall`, their `f`, and the mean per-image `f_per_image`, (256,)."""
        self._require_images()
        precision = self._state["precision_sum"] / self.count
        recall = self._state["recall_sum"] / self.count
        return {
            "precision": precision,
            "recall": recall,
            "f": f_beta(precision, recall, beta2=self.beta2),
            "f_per_image": self._state["f_sum"] / self.count,
        }

    def compute(self) -> dict[str, float]:
        curves = self.curves()
        return {
            "max_f": float(curves["f"].max()),
            "mean_f": float(curves["f"].mean()),
            "adaptive_f": float(self._state["adaptive_f_sum"] / self.count),
            "max_f_per_image": float(curves["f_per_image"].max()),
            "mean_f_per_image": float(curves["f_per_image"].mean()),
        }
