"""Settings of the AutoSOD network and of its training, in frozen dataclasses; presets by name.

Imports neither torch nor ray, so the CLI can parse and validate options without them. The
dataclass defaults are the `small` preset (what trains on a 2-core CPU in about 20 minutes, see
docs/quality.md); `base` overrides them for GPU clusters. `preset(name)` returns a `TrainConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from autosod.models.net_config import (
    DECODER_NAMES,
    MASK_QUERIES,
    LossConfig,
    ModelConfig,
    check_non_negative,
    check_positive_ints,
    check_probabilities,
)

__all__ = [
    "DECODER_NAMES",
    "MASK_QUERIES",
    "PRESETS",
    "AugmentConfig",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
    "preset",
]

@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Joint image + mask augmentation (autosod.training.augment); 0 disables a step."""

    scale_min: float = 0.35  # smallest crop, as a share of the image area
    scale_max: float = 1.0  # largest crop share
    aspect_max: float = 4 / 3  # crop aspect ratio in [1/aspect_max, aspect_max]
    flip_prob: float = 0.5  # horizontal flip
    brightness: float = 0.3  # factor drawn in [1 - b, 1 + b]
    contrast: float = 0.3  # factor drawn in [1 - c, 1 + c]
    saturation: float = 0.3  # factor drawn in [1 - s, 1 + s]
    grayscale_prob: float = 0.1
    blur_prob: float = 0.1
    blur_sigma_max_px: float = 2.0  # Gaussian blur sigma drawn in [0.1, max] pixels

    def __post_init__(self) -> None:
        if not 0 < self.scale_min <= self.scale_max <= 1:
            raise ValueError(
                f"need 0 < scale_min <= scale_max <= 1, got {self.scale_min}, {self.scale_max}"
            )
        if self.aspect_max < 1:
            raise ValueError(f"aspect_max must be >= 1, got {self.aspect_max}")
        check_probabilities(self, "flip_prob", "grayscale_prob", "blur_prob")
        check_probabilities(self, "brightness", "contrast", "saturation")
        if self.blur_sigma_max_px < 0.1:
            raise ValueError(f"blur_sigma_max_px must be >= 0.1, got {self.blur_sigma_max_px}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run besides its data: network, optimiser, loss, augmentation, prediction."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    lr: float = 6e-4  # AdamW learning rate of the decoder (peak, after warm-up)
    backbone_lr_scale: float = 0.1  # the backbone's learning rate is lr * this
    weight_decay: float = 0.05  # AdamW, on weight matrices only (not norms, biases, embeddings)
    warmup_steps: int = 50  # linear warm-up from 0, then cosine decay
    min_lr_ratio: float = 0.02  # the cosine ends at lr * this
    grad_clip_norm: float = 1.0  # 0 disables clipping
    freeze_bn: bool = True  # keep the backbone's BatchNorm statistics (small batches)
    batch_size: int = 8  # images per optimisation step (global, over all workers)
    epochs: int = 10
    min_quality: float = 0.0  # drop pseudo-masks whose stored quality score is below this
    quality_weighting: bool = True  # weight each image's loss by its quality score
    predict_size_px: int = 320  # square input size for validation and prediction
    flip_average: bool = True  # average the prediction with that of the flipped image
    seed: int = 0

    def __post_init__(self) -> None:
        for name, cls in (("model", ModelConfig), ("loss", LossConfig), ("augment", AugmentConfig)):
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"{name} must be a {cls.__name__}, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        check_non_negative(self, "backbone_lr_scale", "weight_decay", "grad_clip_norm",
                           "min_quality")
        check_positive_ints(self, "batch_size", "epochs")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.predict_size_px < 64 or self.predict_size_px % 32:
            raise ValueError(
                f"predict_size_px must be a multiple of 32 and >= 64, got {self.predict_size_px}"
            )
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (run summaries, checkpoint metadata)."""
        return dataclasses.asdict(self)


PRESETS: dict[str, TrainConfig] = {
    "small": TrainConfig(),
    "base": TrainConfig(
        model=ModelConfig(
            input_size_px=384,
            pixel_dim=128,
            hidden_dim=256,
            decoder_layers=6,
            queries=20,
            heads=8,
            ffn_dim=1024,
        ),
        batch_size=32,
        epochs=30,
        warmup_steps=500,
        lr=2e-4,
        predict_size_px=384,
    ),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The preset `name` with `overrides` (None values ignored) replaced; errors list the names."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(PRESETS[name], **given)
