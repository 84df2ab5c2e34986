"""Pixel-wise metrics: mean absolute error and the IoU of the prediction binarised at 0.5.

MAE: Perazzi, Kraehenbuehl, Pritch and Hornung, "Saliency filters: Contrast based filtering for
salient region detection", CVPR 2012. IoU (Jaccard index): Everingham et al., "The PASCAL Visual
Object Classes (VOC) Challenge", IJCV 2010.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from autosod.evaluation.accumulator import Accumulator

__all__ = ["IouAccumulator", "MaeAccumulator"]


class MaeAccumulator(Accumulator):
    """Sum of per-image mean |pred - gt|; `mae` is their mean over images."""

    STATE_SHAPES: ClassVar[dict[str, tuple[int, ...]]] = {"mae_sum": ()}

    def update_normalized(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred (H, W) float64 in [0, 1]; gt (H, W) bool."""
        self._add(mae_sum=float(np.mean(np.abs(pred - gt))))

    def compute(self) -> dict[str, float]:
        self._require_images()
        return {"mae": float(self._state["mae_sum"] / self.count)}


class IouAccumulator(Accumulator):
    """Sum of per-image IoU of `pred > threshold` with the GT; `iou` is their mean.

    An image whose prediction and GT are both empty scores 0 (no union), as in pysodmetrics.
    """

    STATE_SHAPES: ClassVar[dict[str, tuple[int, ...]]] = {"iou_sum": ()}

    def __init__(self, *, threshold: float = 0.5) -> None:
        if not 0 <= threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        self.threshold = threshold
        super().__init__()

    def settings(self) -> dict[str, float]:
        return {"threshold": self.threshold}

    def update_normalized(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred (H, W) float64 in [0, 1]; gt (H, W) bool."""
        binary = pred > self.threshold
        union = np.count_nonzero(binary | gt)
        intersection = np.count_nonzero(binary & gt)
        self._add(iou_sum=intersection / union if union else 0.0)

    def compute(self) -> dict[str, float]:
        self._require_images()
        return {"iou": float(self._state["iou_sum"] / self.count)}
