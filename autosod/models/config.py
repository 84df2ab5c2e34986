"""`BackboneConfig`: which network, weights and CAM source the labeller uses (no torch import).

Kept apart from `backbones.py` so that configuration (CLI, labelling config, store config) loads
without torch; `autosod.models.cams.CAM_SOURCES` implements exactly `CAM_NAMES` (tested).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CAM_NAMES", "BackboneConfig"]

CAM_NAMES = ("classifier", "attention", "pca")


@dataclass(frozen=True, kw_only=True)
class BackboneConfig:
    """Which network, which weights, which CAM; defaults work offline on a fresh machine."""

    model_name: str = "efficientnet_lite0"  # any timm architecture name (tag allowed: `.dino`)
    weights: str = "package:efficientnet-lite0"  # package:NAME | local path | s3://... | hub
    cam: str = "classifier"  # one of CAM_NAMES
    top_classes: int = 1  # C of the classifier CAM (potnet.md: 5; docs/quality.md)
    stages: tuple[int, ...] = (0, 1, 2, 3, 4)  # CNN feature-info indices (ViTs: unused)
    stride_px: int = 16  # CNN feature grid stride (ViTs: the patch size)
    input_size: int = 368  # square network input (pixels); docs/quality.md
    device: str = "cpu"  # cpu | cuda | cuda:N | auto (cuda when available, logged)
    storage_options: Mapping | None = field(default=None, compare=False)  # for s3:// weights

    def __post_init__(self) -> None:
        if self.cam not in CAM_NAMES:
            raise ValueError(f"cam must be one of {sorted(CAM_NAMES)}, got {self.cam!r}")
        if self.top_classes < 1:
            raise ValueError(f"top_classes must be >= 1, got {self.top_classes}")
        if self.input_size < 32 or self.stride_px < 1 or self.input_size % self.stride_px:
            raise ValueError(
                f"input_size must be >= 32 and a multiple of stride_px={self.stride_px}, "
                f"got {self.input_size}; e.g. 320 with stride 16"
            )
        if not self.stages:
            raise ValueError("stages must name at least one feature-info index, got ()")
