"""Input checks and normalisation shared by every metric, and resizing predictions to the GT size.

Conventions follow the SOD literature's MATLAB toolboxes (and pysodmetrics): an 8-bit prediction
is scaled to [0, 1] and min-max normalised per image (`mapminmax(im2double(pred))`), unless it is
constant; an 8-bit ground truth is binarised with `gt > 128`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["resize_to", "validate_pair"]


def validate_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check one prediction/ground-truth pair and bring it to the metrics' working form.

    pred (H, W) uint8 in [0, 255] (scaled and min-max normalised) or float32/float64 in [0, 1]
    (taken as is); gt (H, W) bool or uint8 (binarised at `> 128`).
    Returns pred (H, W) float64 in [0, 1] and gt (H, W) bool.
    """
    if pred.ndim != 2 or gt.ndim != 2:
        raise ValueError(
            f"pred and gt must be 2-D grayscale arrays, got shapes {pred.shape} and {gt.shape}; "
            "convert colour images to grayscale first"
        )
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred shape {pred.shape} differs from gt shape {gt.shape}; resize the prediction "
            "to the ground truth's size first (autosod.evaluation.resize_to)"
        )
    if pred.size == 0:
        raise ValueError(f"pred and gt are empty (shape {pred.shape}); give non-empty images")
    return _normalize_pred(pred), _binarize_gt(gt)


def _normalize_pred(pred: np.ndarray) -> np.ndarray:
    if pred.dtype == np.uint8:
        pred = pred / 255.0
        low, high = pred.min(), pred.max()
        if high != low:
            pred = (pred - low) / (high - low)
        return pred
    if pred.dtype not in (np.float32, np.float64):
        raise TypeError(f"pred must be uint8 or float32/float64 in [0, 1], got dtype {pred.dtype}")
    low, high = float(pred.min()), float(pred.max())
    if not (low >= 0.0 and high <= 1.0):
        raise ValueError(
            f"float pred must lie in [0, 1], got range [{low}, {high}]; pass uint8 maps or "
            "rescale the prediction"
        )
    return pred.astype(np.float64, copy=False)


def _binarize_gt(gt: np.ndarray) -> np.ndarray:
    if gt.dtype == np.bool_:
        return gt
    if gt.dtype == np.uint8:
        return gt > 128
    raise TypeError(f"gt must be bool or uint8 (binarised at > 128), got dtype {gt.dtype}")


def resize_to(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an 8-bit map pred (h, w) uint8 to shape (H, W) with Pillow's bilinear filter.

    Returns pred itself when the size already matches.
    """
    if pred.dtype != np.uint8 or pred.ndim != 2:
        raise TypeError(f"resize_to takes a 2-D uint8 map, got {pred.dtype} {pred.shape}")
    height, width = int(shape[0]), int(shape[1])
    if pred.shape == (height, width):
        return pred
    resized = Image.fromarray(pred).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)
