"""Which pseudo-masks to train on, and how much each counts, from the stored quality score.

The store's per-image quality score (`potnet.confidence.mask_confidence`: feature separation
times the share of the mask away from the border; about 0.05 to 1.1, higher is better) ranks
pseudo-masks by quality (docs/quality.md). NumPy only: the data pipeline calls it in CPU tasks.
"""

from __future__ import annotations

import numpy as np

from autosod.training.config import TrainConfig

__all__ = ["quality_weights"]


def quality_weights(quality: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """quality (N,) -> keep (N,) bool, weights (N,) float32.

    keep: the score is finite and >= `config.min_quality`. weights: the score clipped at 0
    when `config.quality_weighting`, else 1 (the loss averages weight x loss over images).
    """
    quality = np.asarray(quality, np.float64)
    finite = np.isfinite(quality)
    keep = finite & (np.where(finite, quality, -np.inf) >= config.min_quality)
    if config.quality_weighting:
        weights = np.where(finite, np.clip(quality, 0, None), 0.0)
    else:
        weights = np.ones_like(quality)
    return keep, weights.astype(np.float32)
