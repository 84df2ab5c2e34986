"""Synthetic scenes with known masks for the POTNet head's tests (deterministic from a seed).

A textured foreground shape (two overlapping ellipses with a striped colour texture) lies on a
textured background (smoothed colour noise). Features are simple per-cell descriptors of the
rendered image (mean colour, colour spread, gradient energy along x and y), z-scored per image;
the CAM is deliberately coarse (block-averaged), blurred and shifted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Scene", "make_batch", "make_scene"]

_NUM_CENTRES = 64
_RBF_WIDTH = 2.0


@dataclass(frozen=True)
class Scene:
    """feats (N, D) float32, cam (1, N) float32, mask (N,) bool at the grid; image (S, S, 3)."""

    feats: np.ndarray
    cam: np.ndarray
    mask: np.ndarray
    image: np.ndarray
    grid: tuple[int, int]


def _shape_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    mask = np.zeros((size, size), dtype=bool)
    centre = rng.uniform(0.4, 0.6, size=2)
    for part in range(2):
        cy, cx = centre + (rng.uniform(-0.1, 0.1, size=2) if part else 0)
        ry, rx = rng.uniform(0.2, 0.32, size=2)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        mask |= (u / rx) ** 2 + (v / ry) ** 2 <= 1
    return mask


def _render(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    size = mask.shape[0]
    fg_colour = rng.uniform(0.1, 0.9, size=3)
    bg_colour = rng.uniform(0.1, 0.9, size=3)
    while np.linalg.norm(fg_colour - bg_colour) < 0.45:
        bg_colour = rng.uniform(0.1, 0.9, size=3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / rng.uniform(4, 7))
    fg = fg_colour + 0.12 * stripes[..., None] * rng.uniform(0.5, 1.0, size=3)
    noise = ndimage.gaussian_filter(rng.standard_normal((size, size, 3)), sigma=(3, 3, 0))
    bg = bg_colour + 0.1 * noise / noise.std()
    image = np.where(mask[..., None], fg, bg) + 0.02 * rng.standard_normal((size, size, 3))
    return np.clip(image, 0, 1).astype(np.float32)


def _cell_features(image: np.ndarray, grid: int) -> np.ndarray:
    cell = image.shape[0] // grid

    def pool(x: np.ndarray) -> np.ndarray:
        return x.reshape(grid, cell, grid, cell, -1).mean(axis=(1, 3)).reshape(grid * grid, -1)

    mean = pool(image)
    spread = np.sqrt(np.maximum(pool(image**2) - mean**2, 0))
    grad_y = np.abs(np.diff(image, axis=0, append=image[-1:])).sum(axis=2, keepdims=True)
    grad_x = np.abs(np.diff(image, axis=1, append=image[:, -1:])).sum(axis=2, keepdims=True)
    desc = np.concatenate([mean, spread, pool(grad_x), pool(grad_y)], axis=1)
    desc = (desc - desc.mean(axis=0)) / (desc.std(axis=0) + 1e-6)
    # Non-negative RBF responses to fixed centres: like a backbone's features, similar
    # descriptors give cosine near 1 and different ones near 0, and no image is zero-centred.
    centres = np.random.default_rng(12345).standard_normal((_NUM_CENTRES, desc.shape[1]))
    dist2 = ((desc[:, None, :] - centres[None]) ** 2).sum(axis=2)
    return np.exp(-dist2 / (2 * _RBF_WIDTH**2)).astype(np.float32)


def _coarse_cam(rng: np.random.Generator, grid_mask: np.ndarray) -> np.ndarray:
    grid = grid_mask.shape[0]
    block = 4
    coarse = grid_mask.reshape(grid // block, block, grid // block, block).mean(axis=(1, 3))
    cam = np.kron(coarse, np.ones((block, block)))
    cam = ndimage.gaussian_filter(cam, sigma=2.0)
    shift = rng.choice([-3, -2, 2, 3], size=2)
    cam = ndimage.shift(cam, shift, order=1, mode="constant")
    return (np.maximum(cam, 0) / max(cam.max(), 1e-6)).astype(np.float32)


def make_scene(seed: int, *, grid: int = 28, cell_px: int = 8) -> Scene:
    """One scene on a grid x grid feature grid (N = grid^2, D = 8); `grid` a multiple of 4."""
    rng = np.random.default_rng(seed)
    size = grid * cell_px
    pixel_mask = _shape_mask(rng, size)
    image = _render(rng, pixel_mask)
    cover = pixel_mask.reshape(grid, cell_px, grid, cell_px).mean(axis=(1, 3))
    grid_mask = cover >= 0.5
    return Scene(
        feats=_cell_features(image, grid),
        cam=_coarse_cam(rng, grid_mask).reshape(1, -1),
        mask=grid_mask.reshape(-1),
        image=image,
        grid=(grid, grid),
    )


def make_batch(
    seeds: list[int], *, grid: int = 28
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scenes for `seeds` stacked: feats (B, N, D), cams (B, 1, N), masks (B, N) bool."""
    scenes = [make_scene(seed, grid=grid) for seed in seeds]
    return (
        np.stack([s.feats for s in scenes]),
        np.stack([s.cam for s in scenes]),
        np.stack([s.mask for s in scenes]),
    )
