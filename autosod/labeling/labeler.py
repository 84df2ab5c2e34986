"""Single-process pseudo-labelling: backbone features + CAMs -> POTNet head -> masks at full size.

`PseudoLabeler(config)` loads the backbone once; `label_batch` takes images already resized to
the input size with their original sizes, `label_images` takes paths (local or `s3://`) or
arrays of any size. No Ray here: the labelling job's actor runs the same two steps apart:
`label_grid` (backbone + head + scores at the feature grid, on the model's device) and
`full_maps` (upsampling to the original sizes on that device, one device-to-host copy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autosod.io.decode import DEFAULT_MAX_PIXELS, read_image, resize_to_input
from autosod.io.mask_codec import unpack_mask
from autosod.labeling.config import LabelerConfig
from autosod.labeling.maps import full_size, to_host, upsample_grid
from autosod.models.backbones import FeatureExtractor, Features, build_model
from autosod.potnet import NO_SIGNAL_REASONS, from_dlpack, run_head
from autosod.potnet.mask_quality import mask_quality

__all__ = [
    "CONSTANT_IMAGE",
    "CPU_CHUNK_IMAGES",
    "PRECISIONS",
    "FullMaps",
    "GridLabels",
    "LabelBatch",
    "PseudoLabeler",
    "check_weights",
    "flat_images",
    "full_maps",
    "upsample_grid",
]

PRECISIONS = ("fp32", "bf16")  # of the backbone; bf16 = autocast, CUDA only
CONSTANT_IMAGE = "constant image"  # the no-signal reason of a picture without any contrast
CPU_CHUNK_IMAGES = 2  # images per CPU backbone call: the fastest measured (docs/benchmarks.md)
_FLAT_LEVELS = 2  # an image whose pixels all lie within this many of 255 levels is constant


@dataclass(frozen=True)
class LabelBatch:
    """Results for B images: per-image arrays at each original size, per-image scores (B,)."""

    softs: list[np.ndarray]  # uint8 (H, W): soft saliency × 255, rounded
    masks: list[np.ndarray]  # bool (H, W): soft ≥ mask_threshold
    fg_fraction: np.ndarray  # float32 (B,): share of mask pixels at the original size
    mean_entropy: np.ndarray  # float32 (B,): mean normalised class entropy on the grid
    transport_cost: np.ndarray  # float32 (B,): final transport cost
    mask_quality: np.ndarray  # float32 (B,): potnet.mask_quality of the grid mask (high: good)
    no_signal: list[str]  # "" where the image had a signal, else why not (maps and scores 0)

    def __len__(self) -> int:
        return len(self.masks)


@dataclass(frozen=True)
class GridLabels:
    """The head's result for B images at the feature grid: soft maps on the model's device,
    scores and the no-signal reasons on the host."""

    soft: torch.Tensor  # (B, N) float32 in [0, 1]; zeros where no signal
    grid: tuple[int, int]  # (h, w), N = h·w
    mean_entropy: np.ndarray | None  # float32 (B,); None: not made by this model
    transport_cost: np.ndarray | None  # float32 (B,); None: not made by this model
    mask_quality: np.ndarray  # float32 (B,)
    no_signal: list[str]  # "" where the image had a signal, else why not
    objectness: np.ndarray | None = None  # float32 (B,): a trained network's; None for POTNet


@dataclass(frozen=True)
class FullMaps:
    """Full-size maps of some images of a batch, on the host."""

    rows: list[int]  # the images' indices in the batch
    softs: list[np.ndarray]  # uint8 (H, W): round(255 s)
    mask_bits: list[np.ndarray]  # uint8 (H, ceil(W / 8)): s >= mask_threshold, packed rows


def full_maps(labels: GridLabels, sizes: Sequence[tuple[int, int]],
              rows: Sequence[int] | None = None, *, threshold: float) -> FullMaps:
    """Upsample the `rows` (default: all) of `labels` to their `sizes` [(H, W) per image of the
    batch] on the soft maps' device (`maps.full_size`); one device-to-host copy for all."""
    rows = list(range(len(sizes))) if rows is None else list(rows)
    tensors = []
    for row in rows:
        height, width = sizes[row]
        tensors.extend(full_size(labels.soft[row], labels.grid, (int(height), int(width)),
                                 threshold=threshold))
    arrays = to_host(tensors)
    return FullMaps(rows=rows, softs=arrays[0::2], mask_bits=arrays[1::2])


def check_weights(config: LabelerConfig, *, storage_options: Mapping | None = None) -> None:
    """Resolve and load the weights into the model once (preflight); raises on any problem."""
    build_model(config.backbone(storage_options))


def flat_images(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 (B, H, W, 3) -> (B,) bool: True where every pixel lies within 2 levels of the
    others (a constant picture: nothing to segment)."""
    flat = torch.as_tensor(images).reshape(len(images), -1)
    spread = flat.amax(dim=1).int() - flat.amin(dim=1).int()
    return (spread <= _FLAT_LEVELS).cpu().numpy()


class PseudoLabeler:
    """Backbone loaded once; uint8 images in, soft maps and masks at the original size out.

    `precision="bf16"` runs the backbone under bfloat16 autocast (CUDA devices only); the head
    always gets float32 features. `cpu_chunk`: images per backbone call on a CPU.
    """

    def __init__(
        self,
        config: LabelerConfig | None = None,
        *,
        storage_options: Mapping | None = None,
        precision: str = "fp32",
        cpu_chunk: int = CPU_CHUNK_IMAGES,
    ) -> None:
        self.config = config or LabelerConfig()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.extractor = FeatureExtractor(self.config.backbone(storage_options))
        self.device = self.extractor.device
        if precision == "bf16" and torch.device(self.device).type != "cuda":
            raise ValueError(
                f"precision 'bf16' needs a CUDA device, but the backbone runs on {self.device}; "
                "label in fp32 (--no-bf16) or on a GPU"
            )
        self.precision = precision
        self.cpu_chunk = max(1, cpu_chunk)

    def features(self, images: np.ndarray | torch.Tensor) -> Features:
        """uint8 (B, S, S, 3) -> backbone `Features` (float32 out, also under bf16). On a CPU
        the backbone runs `cpu_chunk` images at a time: per-image results are the same (to
        float32 rounding), and the activations stay small enough for the allocator to reuse
        (`host_memory`)."""
        if torch.device(self.device).type == "cpu" and len(images) > self.cpu_chunk:
            parts = [self.features(images[start:start + self.cpu_chunk])
                     for start in range(0, len(images), self.cpu_chunk)]
            return Features(torch.cat([p.feats for p in parts]),
                            torch.cat([p.cams for p in parts]), parts[0].grid)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.extractor(images)

    def grid_labels(self, features: Features, *, flat: np.ndarray | None = None) -> GridLabels:
        """The head and the mask-quality score on `features`; `flat` (B,) bool marks constant
        images, which get no signal (as do the head's degenerate inputs)."""
        feats = from_dlpack(features.feats.detach())
        head = run_head(feats, from_dlpack(features.cams.detach()), self.config.potnet)
        # ranks pseudo-masks by quality far better than the head's spread (docs/quality.md)
        quality = mask_quality(feats, head.mask, features.grid)
        reasons = [NO_SIGNAL_REASONS[code] for code in _host(head.no_signal, np.int8)]
        if flat is not None:
            reasons = [CONSTANT_IMAGE if is_flat else r for r, is_flat in zip(reasons, flat,
                                                                              strict=True)]
        soft = torch.from_dlpack(head.soft)  # (B, N), zero-copy, same device
        keep = torch.tensor([not r for r in reasons], device=soft.device)
        return GridLabels(
            soft=soft * keep[:, None],
            grid=features.grid,
            mean_entropy=_kept(_host(head.mean_entropy), reasons),
            transport_cost=_kept(_host(head.transport_cost), reasons),
            mask_quality=_kept(_host(quality), reasons),
            no_signal=reasons,
        )

    def label_grid(self, images: np.ndarray | torch.Tensor) -> GridLabels:
        """uint8 (B, S, S, 3) at the input size -> `GridLabels` (backbone + head)."""
        return self.grid_labels(self.features(images), flat=flat_images(images))

    def grid_cells(self) -> int:
        """N = h·w of the feature grid."""
        side = self.config.input_size // self.config.stride_px
        return side * side

    def full_maps(self, labels: GridLabels, sizes: Sequence[tuple[int, int]],
                  rows: Sequence[int] | None = None) -> FullMaps:
        """Upsample the `rows` (default: all) of `labels` to their `sizes` [(H, W) per image of
        the batch] on the model's device; one device-to-host copy for all of them."""
        return full_maps(labels, sizes, rows, threshold=self.config.potnet.mask_threshold)

    def label_features(self, features: Features, sizes: Sequence[tuple[int, int]], *,
                       flat: np.ndarray | None = None) -> LabelBatch:
        """Run the head on `features` (B images) and upsample to `sizes` [(H, W), ...]."""
        if len(sizes) != features.feats.shape[0]:
            raise ValueError(
                f"got {len(sizes)} sizes for {features.feats.shape[0]} images; pass one (H, W) "
                f"per image"
            )
        labels = self.grid_labels(features, flat=flat)
        maps = self.full_maps(labels, sizes)
        masks = [unpack_mask(bits, int(width)) for bits, (_, width) in
                 zip(maps.mask_bits, sizes, strict=True)]
        return LabelBatch(
            softs=maps.softs,
            masks=masks,
            fg_fraction=np.array([m.mean() for m in masks], dtype=np.float32),
            mean_entropy=labels.mean_entropy,
            transport_cost=labels.transport_cost,
            mask_quality=labels.mask_quality,
            no_signal=labels.no_signal,
        )

    def label_batch(
        self, images: np.ndarray | torch.Tensor, sizes: Sequence[tuple[int, int]]
    ) -> LabelBatch:
        """uint8 (B, S, S, 3) at the input size + original sizes [(H, W), ...] -> LabelBatch."""
        return self.label_features(self.features(images), sizes, flat=flat_images(images))

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


def _kept(values: np.ndarray, reasons: list[str]) -> np.ndarray:
    return np.where([not r for r in reasons], values, 0).astype(np.float32)


def _host(values: object, dtype: type = np.float32) -> np.ndarray:
    return np.asarray(torch.from_dlpack(values).cpu().numpy(), dtype=dtype)


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
        no_signal=[r for p in parts for r in p.no_signal],
    )
