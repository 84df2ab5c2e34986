"""Single-process pseudo-labelling: backbone features + CAMs -> POTNet head -> masks at full size.

`PseudoLabeler(config)` loads the backbone once; `label_batch` takes images already resized to
the input size with their original sizes, `label_images` takes paths (local or `s3://`) or
arrays of any size. No Ray here: the labelling job's actor wraps exactly this class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as nnf

from autosod.io.decode import DEFAULT_MAX_PIXELS, read_image, resize_to_input
from autosod.labeling.config import LabelerConfig
from autosod.models.backbones import FeatureExtractor, Features, build_model
from autosod.potnet import from_dlpack, run_head
from autosod.potnet.mask_quality import mask_quality

__all__ = ["LabelBatch", "PseudoLabeler", "check_weights", "upsample_grid"]




@dataclass(frozen=True)
class LabelBatch:
    """Results for B images: per-image arrays at each original size, per-image scores (B,)."""

    softs: list[np.ndarray]  # uint8 (H, W): soft saliency × 255, rounded
    masks: list[np.ndarray]  # bool (H, W): soft ≥ mask_threshold
    fg_fraction: np.ndarray  # float32 (B,): share of mask pixels at the original size
    mean_entropy: np.ndarray  # float32 (B,): mean normalised class entropy on the grid
    transport_cost: np.ndarray  # float32 (B,): final transport cost
    mask_quality: np.ndarray  # float32 (B,): potnet.mask_quality of the grid mask (high: good)

    def __len__(self) -> int:
        return len(self.masks)


def check_weights(config: LabelerConfig, *, storage_options: Mapping | None = None) -> None:
    """Resolve and load the weights into the model once (preflight); raises on any problem."""
    build_model(config.backbone(storage_options))


def upsample_grid(soft: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """soft (N,) on the grid -> (H, W) bilinear (align_corners=False), clipped to [0, 1]."""
    image = soft.reshape(1, 1, *grid)
    return nnf.interpolate(image, size=size, mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)


class PseudoLabeler:
    """Backbone loaded once; uint8 images in, soft maps and masks at the original size out."""

    def __init__(
        self, config: LabelerConfig | None = None, *, storage_options: Mapping | None = None
    ) -> None:
        self.config = config or LabelerConfig()
        self.extractor = FeatureExtractor(self.config.backbone(storage_options))
        self.device = self.extractor.device

    def label_features(self, features: Features, sizes: Sequence[tuple[int, int]]) -> LabelBatch:
        """Run the head on `features` (B images) and upsample to `sizes` [(H, W), ...]."""
        if len(sizes) != features.feats.shape[0]:
            raise ValueError(
                f"got {len(sizes)} sizes for {features.feats.shape[0]} images; pass one (H, W) "
                f"per image"
            )
        feats = from_dlpack(features.feats.detach())
        head = run_head(feats, from_dlpack(features.cams.detach()), self.config.potnet)
        # ranks pseudo-masks by quality far better than the head's spread (docs/quality.md)
        quality = mask_quality(feats, head.mask, features.grid)
        soft = torch.from_dlpack(head.soft)  # (B, N), zero-copy, same device
        threshold = self.config.potnet.mask_threshold
        softs, masks = [], []
        for index, (height, width) in enumerate(sizes):
            full = upsample_grid(soft[index], features.grid, (int(height), int(width)))
            masks.append((full >= threshold).cpu().numpy())
            softs.append((full * 255).round().to(torch.uint8).cpu().numpy())
        return LabelBatch(
            softs=softs,
            masks=masks,
            fg_fraction=np.array([m.mean() for m in masks], dtype=np.float32),
            mean_entropy=_host(head.mean_entropy),
            transport_cost=_host(head.transport_cost),
            mask_quality=_host(quality),
        )

    def label_batch(
        self, images: np.ndarray | torch.Tensor, sizes: Sequence[tuple[int, int]]
    ) -> LabelBatch:
        """uint8 (B, S, S, 3) at the input size + original sizes [(H, W), ...] -> LabelBatch."""
        return self.label_features(self.extractor(images), sizes)

    def label_images(
        self,
        images: Sequence[str | Path | np.ndarray],
        *,
        batch_size: int = 16,
        storage_options: Mapping | None = None,
    ) -> LabelBatch:
        """Paths (local or s3://) or uint8 (H, W, 3) arrays of any size -> one LabelBatch.

        Raises ValueError naming the first image that cannot be read or decoded.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        parts = [
            self._label_chunk(images[start : start + batch_size], storage_options)
            for start in range(0, len(images), batch_size)
        ]
        return _concat(parts)

    def _label_chunk(
        self, chunk: Sequence[str | Path | np.ndarray], storage_options: Mapping | None
    ) -> LabelBatch:
        rgbs = [_load_rgb(item, storage_options) for item in chunk]
        batch = np.stack([resize_to_input(rgb, self.config.input_size) for rgb in rgbs])
        return self.label_batch(batch, [rgb.shape[:2] for rgb in rgbs])


def _host(values: object) -> np.ndarray:
    return np.asarray(torch.from_dlpack(values).cpu().numpy(), dtype=np.float32)


def _load_rgb(item: str | Path | np.ndarray, storage_options: Mapping | None) -> np.ndarray:
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise ValueError(
                f"image arrays must be uint8 (H, W, 3), got shape {item.shape} dtype {item.dtype}"
            )
        return item
    result = read_image(
        str(item),
        max_pixels=DEFAULT_MAX_PIXELS,
        storage_options=dict(storage_options) if storage_options else None,
    )
    if not result.ok:
        raise ValueError(f"cannot label {str(item)!r}: {result.status}: {result.error}")
    return result.rgb


def _concat(parts: list[LabelBatch]) -> LabelBatch:
    def cat(name: str) -> np.ndarray:
        arrays = [getattr(p, name) for p in parts]
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float32)

    return LabelBatch(
        softs=[s for p in parts for s in p.softs],
        masks=[m for p in parts for m in p.masks],
        fg_fraction=cat("fg_fraction"),
        mean_entropy=cat("mean_entropy"),
        transport_cost=cat("transport_cost"),
        mask_quality=cat("mask_quality"),
    )
