"""Settings of the AutoSOD network and of its training, in frozen dataclasses; presets by name.

Imports neither torch nor ray, so the CLI can parse and validate options without them. The
dataclass defaults are the `small` preset (what trains on a 2-core CPU in about 20 minutes, see
docs/quality.md); `base` overrides them for GPU clusters. `preset(name)` returns a `TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

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

DECODER_NAMES = ("query", "fpn")  # keys of autosod.models.autosod_net.DECODERS
MASK_QUERIES = ("all", "best")  # which queries the mask loss supervises

# ModelConfig fields that do not change the parameters or what they compute: a checkpoint
# trained at one input size, or initialised from another weight file, loads into the other.
_NOT_ARCHITECTURE = ("input_size_px", "weights")


def _positive_ints(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _non_negative(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def _probabilities(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(valid)}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The AutoSOD network: timm backbone, pixel decoder, and a query or FPN mask decoder."""

    backbone: str = "efficientnet_lite0"  # timm architecture name (tag allowed: `.dino`)
    weights: str = "package:efficientnet-lite0"  # package:NAME | local path | s3://... | hub
    feature_indices: tuple[int, ...] = (1, 2, 3, 4)  # CNN feature-info stages / ViT blocks
    decoder: str = "query"  # "query" (learned queries, objectness) | "fpn" (one mask head)
    input_size_px: int = 256  # square training input; prediction may use another size
    output_stride: int = 4  # stride of the pixel decoder output (mask resolution): 4 or 8
    pixel_dim: int = 64  # channels of the pixel decoder = mask embedding dimension
    hidden_dim: int = 128  # transformer width of the query decoder
    decoder_layers: int = 3  # transformer decoder layers (each one is supervised)
    queries: int = 10  # learned queries
    heads: int = 4  # attention heads (hidden_dim must divide by it)
    ffn_dim: int = 256  # feed-forward width of each decoder layer
    dropout: float = 0.0  # dropout in the decoder layers

    def __post_init__(self) -> None:
        _choice("decoder", self.decoder, DECODER_NAMES)
        _positive_ints(
            self, "pixel_dim", "hidden_dim", "decoder_layers", "queries", "heads", "ffn_dim"
        )
        if self.output_stride not in (4, 8):
            raise ValueError(f"output_stride must be 4 or 8, got {self.output_stride!r}")
        if (
            not isinstance(self.input_size_px, int)
            or self.input_size_px < 64
            or (self.input_size_px % 32)
        ):
            raise ValueError(
                f"input_size_px must be a multiple of 32 and >= 64, got {self.input_size_px!r}; "
                f"e.g. 256"
            )
        if self.hidden_dim % self.heads:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be divisible by heads ({self.heads})"
            )
        if not self.feature_indices or any(
            not isinstance(i, int) or i < 0 for i in self.feature_indices
        ):
            raise ValueError(
                f"feature_indices must be non-negative integers, got {self.feature_indices!r}"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.backbone or not self.weights:
            raise ValueError("backbone and weights must be non-empty strings")

    def fingerprint(self) -> str:
        """JSON of the fields that define the parameters (what a checkpoint must match)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_ARCHITECTURE}
        return json.dumps(fields, sort_keys=True)

    def to_json(self) -> str:
        """All fields as JSON (tuples as lists); `from_json` reverses it."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """The config saved by `to_json`; raises ValueError on unknown fields."""
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; written by a newer version?")
        if "feature_indices" in data:
            data["feature_indices"] = tuple(data["feature_indices"])
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Weights of the loss terms, applied on every decoder layer (deep supervision)."""

    bce_weight: float = 1.0  # binary cross-entropy with the soft pseudo-mask
    dice_weight: float = 1.0  # soft dice loss
    rank_weight: float = 1.0  # objectness ranking hinge (query decoder only)
    rank_margin: float = 0.1  # hinge margin on objectness logits
    mask_queries: str = "all"  # "all": every query learns the mask; "best": only the closest
    deep_supervision: bool = True  # False: the last decoder layer only

    def __post_init__(self) -> None:
        _non_negative(self, "bce_weight", "dice_weight", "rank_weight", "rank_margin")
        if self.bce_weight + self.dice_weight == 0:
            raise ValueError("bce_weight and dice_weight cannot both be 0: nothing learns masks")
        _choice("mask_queries", self.mask_queries, MASK_QUERIES)


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
        _probabilities(self, "flip_prob", "grayscale_prob", "blur_prob")
        _probabilities(self, "brightness", "contrast", "saturation")
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
        _non_negative(self, "backbone_lr_scale", "weight_decay", "grad_clip_norm", "min_quality")
        _positive_ints(self, "batch_size", "epochs")
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
