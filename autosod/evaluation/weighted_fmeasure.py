"""Weighted F-measure: errors weighted by pixel dependency and by distance to the object.

Margolin, Zelnik-Manor and Tal, "How to Evaluate Foreground Maps?", CVPR 2014. Follows the
authors' MATLAB code: 7x7 Gaussian (sigma 5) smoothing of the error, background errors taken at
the nearest foreground pixel, background importance 2 - exp(ln(0.5) / 5 * distance), beta2 = 1.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import ndimage

from autosod.evaluation.accumulator import BetaAccumulator

__all__ = ["WeightedFmeasureAccumulator", "weighted_fmeasure"]

_EPS = np.spacing(1.0)  # MATLAB's eps, as in the reference implementation


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """MATLAB's fspecial('gaussian', size, sigma): (size, size) float64 summing to 1."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
    return kernel / kernel.sum()


_KERNEL = _gaussian_kernel(7, 5.0)


def weighted_fmeasure(pred: np.ndarray, gt: np.ndarray, *, beta2: float) -> float:
    """Weighted F of one image: pred (H, W) float64 in [0, 1], gt (H, W) bool -> float.

    An all-background GT scores 0.
    """
    if not gt.any():
        return 0.0
    distance, nearest = ndimage.distance_transform_edt(~gt, return_indices=True)
    error = np.abs(pred - gt)
    background = ~gt
    dependent = error.copy()  # background pixels take the error of their nearest object pixel
    dependent[background] = error[nearest[0][background], nearest[1][background]]
    smoothed = ndimage.correlate(dependent, _KERNEL, mode="constant", cval=0.0)
    error_min = np.where(gt & (smoothed < error), smoothed, error)
    importance = np.where(background, 2 - np.exp(np.log(0.5) / 5 * distance), 1.0)
    weighted_error = error_min * importance
    fg_error = weighted_error[gt]
    true_positive = np.count_nonzero(gt) - fg_error.sum()
    false_positive = weighted_error[background].sum()
    recall = 1 - fg_error.mean()
    precision = true_positive / (true_positive + false_positive + _EPS)
    return float((1 + beta2) * recall * precision / (recall + beta2 * precision + _EPS))


class WeightedFmeasureAccumulator(BetaAccumulator):
    """Sum of per-image weighted F-measures; `weighted_f` is their mean."""

    STATE_SHAPES: ClassVar[dict[str, tuple[int, ...]]] = {"weighted_f_sum": ()}

    DEFAULT_BETA2: ClassVar[float] = 1.0

    def update_normalized(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred (H, W) float64 in [0, 1]; gt (H, W) bool."""
        self._add(weighted_f_sum=weighted_fmeasure(pred, gt, beta2=self.beta2))

    def compute(self) -> dict[str, float]:
        self._require_images()
        return {"weighted_f": float(self._state["weighted_f_sum"] / self.count)}
