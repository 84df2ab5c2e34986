"""`mask_quality`: a per-image score that ranks pseudo-masks by quality (docs/quality.md, "Mask
quality").

mask_quality = (1 - cos(mean foreground feature, mean background feature)) x (1 - share of the
grid's border cells inside the mask): a mask whose two sides look alike in feature space, or
that runs along the frame (background taken for the object), is less likely to be right.
NumPy or CuPy, batched.
"""

from __future__ import annotations

from typing import Any

from autosod.potnet.kmeans import unit_rows
from autosod.potnet.xp import array_module

__all__ = ["border_share", "feature_separation", "mask_quality"]

Array = Any


def feature_separation(feats: Array, mask: Array) -> Array:
    """feats (B, N, D), mask (B, N) bool -> 1 - cos(unit mean fg, unit mean bg) (B,) in [0, 2];
    0 when either side is empty."""
    xp = array_module(feats, mask)
    feats = unit_rows(xp.asarray(feats, dtype=xp.float32))
    fg = unit_rows((feats * mask[:, :, None]).sum(axis=1))
    bg = unit_rows((feats * ~mask[:, :, None]).sum(axis=1))
    both = mask.any(axis=1) & (~mask).any(axis=1)
    return xp.where(both, 1 - (fg * bg).sum(axis=1), 0).astype(xp.float32)


def border_share(mask: Array, grid: tuple[int, int]) -> Array:
    """mask (B, h*w) bool -> share of the border cells of the (h, w) grid inside it (B,)."""
    xp = array_module(mask)
    height, width = grid
    if mask.shape[1] != height * width:
        raise ValueError(f"mask has {mask.shape[1]} positions, grid {grid} has {height * width}")
    frame = xp.zeros((height, width), dtype=bool)
    frame[0], frame[-1], frame[:, 0], frame[:, -1] = True, True, True, True
    frame = frame.reshape(-1)
    return (mask[:, frame].sum(axis=1) / frame.sum()).astype(xp.float32)


def mask_quality(feats: Array, mask: Array, grid: tuple[int, int]) -> Array:
    """feats (B, N, D), mask (B, N) bool on the (h, w) grid -> mask quality (B,) float32 >= 0."""
    return (feature_separation(feats, mask) * (1 - border_share(mask, grid))).astype(
        array_module(feats).float32
    )
