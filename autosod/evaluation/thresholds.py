"""Per-image counts at the 256 thresholds of the SOD literature, from a histogram and a cumsum.

A prediction in [0, 1] is quantised to levels `floor(255 * pred)`; threshold t in 0..255 keeps
pixels with level >= t (index t of every curve here, increasing thresholds).
"""

from __future__ import annotations

import numpy as np

__all__ = ["NUM_THRESHOLDS", "adaptive_threshold", "threshold_counts"]

NUM_THRESHOLDS = 256


def threshold_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pred (H, W) float64 in [0, 1], gt (H, W) bool -> (tp, positives), each (256,) int64.

    `tp[t]` counts GT-foreground pixels with level >= t, `positives[t]` all pixels with level >= t.
    """
    levels = (pred * 255).astype(np.uint8)
    fg_hist = np.bincount(levels[gt], minlength=NUM_THRESHOLDS)
    all_hist = np.bincount(levels.ravel(), minlength=NUM_THRESHOLDS)
    tp = np.cumsum(fg_hist[::-1])[::-1]
    positives = np.cumsum(all_hist[::-1])[::-1]
    return tp, positives


def adaptive_threshold(pred: np.ndarray) -> float:
    """Twice the mean saliency, capped at 1 (Achanta et al., CVPR 2009). pred (H, W) in [0, 1]."""
    return min(2.0 * float(pred.mean()), 1.0)
