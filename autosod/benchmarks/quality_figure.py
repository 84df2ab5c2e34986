"""Overlay figure of the quality ablation: per image, the photo, its ground truth and each
variant's binary mask (soft map > 0.5) tinted over the photo. matplotlib Agg canvas."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autosod.benchmarks.quality_features import FeatureSet, _read_rgb

__all__ = ["overlay", "write_overlay_figure"]

logger = logging.getLogger(__name__)

_TINT = np.array([255, 40, 40], dtype=np.float32)


def overlay(rgb: np.ndarray, mask: np.ndarray, *, alpha: float = 0.55) -> np.ndarray:
    """rgb (H, W, 3) uint8, mask (H, W) bool -> uint8 (H, W, 3): mask pixels tinted red,
    the rest darkened."""
    out = rgb.astype(np.float32) * 0.6
    out[mask] = (1 - alpha) * rgb[mask].astype(np.float32) + alpha * _TINT
    return out.clip(0, 255).astype(np.uint8)


def write_overlay_figure(
    shown: Sequence[tuple[FeatureSet, dict[str, np.ndarray]]],
    path: str | Path,
    *,
    images: int,
) -> Path:
    """`shown`: per set, its FeatureSet and {variant: soft (m, N) on the grid} for its first m
    images. Rows are images, columns photo, GT and the variants. Returns the PNG's path."""
    from autosod.benchmarks.quality import full_size_maps

    rows = [(fs, maps, i) for fs, maps in shown for i in range(min(images, len(fs)))]
    names = list(shown[0][1])
    figure = Figure(figsize=(1.9 * (len(names) + 2), 1.6 * len(rows)))
    full = {
        id(fs): {name: full_size_maps(fs, soft) for name, soft in maps.items()}
        for fs, maps in shown
    }
    for r, (fs, _, index) in enumerate(rows):
        rgb = _read_rgb(fs.image_uris[index])
        panels = [("image", rgb), ("ground truth", overlay(rgb, fs.gt(index)))]
        panels += [(name, overlay(rgb, full[id(fs)][name][index] > 0.5)) for name in names]
        for c, (title, picture) in enumerate(panels):
            axes = figure.add_subplot(len(rows), len(panels), r * len(panels) + c + 1)
            axes.imshow(picture)
            axes.set_xticks([])
            axes.set_yticks([])
            if r == 0:
                axes.set_title(title, fontsize=8)
            if c == 0:
                axes.set_ylabel(f"{fs.name}\n{fs.stems[index]}", fontsize=6)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    logger.info("wrote %s", path)
    return path
