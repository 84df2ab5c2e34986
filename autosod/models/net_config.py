"""Settings of the AutoSOD network (`ModelConfig`) and of its losses (`LossConfig`).

Imports neither torch nor ray. `autosod.training.config` builds the training presets from them;
the network (`autosod.models.autosod_net`) and the losses (`autosod.models.losses`) read them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

__all__ = [
    "DECODER_NAMES",
    "MASK_QUERIES",
    "LossConfig",
    "ModelConfig",
    "check_choice",
    "check_non_negative",
    "check_positive_ints",
    "check_probabilities",
]

DECODER_NAMES = ("query", "fpn")  # keys of autosod.models.autosod_net.DECODERS
MASK_QUERIES = ("all", "best")  # which queries the mask loss supervises

# ModelConfig fields that do not change the parameters or what they compute: a checkpoint
# trained at one input size, or initialised from another weight file, loads into the other.
_NOT_ARCHITECTURE = ("input_size_px", "weights")


def check_positive_ints(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_non_negative(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def check_probabilities(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
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
        check_choice("decoder", self.decoder, DECODER_NAMES)
        check_positive_ints(
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
        check_non_negative(self, "bce_weight", "dice_weight", "rank_weight", "rank_margin")
        if self.bce_weight + self.dice_weight == 0:
            raise ValueError("bce_weight and dice_weight cannot both be 0: nothing learns masks")
        check_choice("mask_queries", self.mask_queries, MASK_QUERIES)
