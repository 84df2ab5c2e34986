"""`BackboneConfig`: which network, weights and CAM source the labeller uses (no torch import).

Kept apart from `backbones.py` so that configuration (CLI, labelling config, store config) loads
without torch; `autosod.models.cams.CAM_SOURCES` implements exactly `CAM_NAMES` (tested).

Weights, normalisation and key mapping default to None, "the source's own": `weights=None` is
filled in with the packaged weights of `model_name` (`package:efficientnet-lite2` for the default
model, `package:efficientnet-lite0` for `efficientnet_lite0`); `mean`/`std` None are the packaged
weights' normalisation, else timm's for the model; `weights_mapping` None is in order for packaged
weights, else by name. A packaged source given another normalisation or mapping is refused (its
file was trained with one), and values equal to the package's own are stored as None, so the
same setting always reads (and hashes) the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autosod.models.packaged import WEIGHT_MAPPINGS, packaged_source, packaged_weights

__all__ = ["CAM_NAMES", "SOURCE_OWN_FIELDS", "BackboneConfig", "canonical_backbone_fields"]

CAM_NAMES = ("classifier", "attention", "pca")


@dataclass(frozen=True, kw_only=True)
class BackboneConfig:
    """Which network, which weights, which CAM; defaults work offline on a fresh machine."""

    model_name: str = "efficientnet_lite2"  # any timm architecture name (tag allowed: `.dino`);
    # Lite2 beat Lite0 on horse and GrabCut IoU and max F (docs/quality.md, "Backbones")
    weights: str | None = None  # package:NAME | local path | s3://... | hub; None: packaged
    mean: tuple[float, float, float] | None = None  # input normalisation; None: the source's own
    std: tuple[float, float, float] | None = None  # (given together with mean)
    weights_mapping: str | None = None  # by-name | in-order; None: the source's own
    cam: str = "classifier"  # one of CAM_NAMES
    top_classes: int = 1  # C of the classifier CAM (potnet.md: 5; docs/quality.md)
    stages: tuple[int, ...] = (0, 1, 2, 3, 4)  # CNN feature-info indices (ViTs: unused)
    stride_px: int = 16  # CNN feature grid stride (ViTs: the patch size)
    input_size: int = 384  # square network input (pixels); Lite2's best, docs/quality.md
    device: str = "cpu"  # cpu | cuda | cuda:N | auto (cuda when available, logged)
    storage_options: Mapping | None = field(default=None, compare=False)  # for s3:// weights

    def __post_init__(self) -> None:
        fields = canonical_backbone_fields(
            model_name=self.model_name, weights=self.weights, mean=self.mean, std=self.std,
            weights_mapping=self.weights_mapping)
        for name, value in fields.items():
            object.__setattr__(self, name, value)
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


SOURCE_OWN_FIELDS = ("mean", "std", "weights_mapping")  # None: the weights source's own


def _channels(name: str, value: Sequence[float] | None) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        channels = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be 3 numbers (R, G, B), got {value!r}") from err
    if len(channels) != 3 or not all(math.isfinite(v) for v in channels):
        raise ValueError(f"{name} must be 3 finite numbers (R, G, B), got {value!r}")
    if name == "std" and min(channels) <= 0:
        raise ValueError(f"std must be > 0 in every channel, got {value!r}")
    return channels  # type: ignore[return-value]


def canonical_backbone_fields(
    *, model_name: str, weights: str | None, mean: Sequence[float] | None,
    std: Sequence[float] | None, weights_mapping: str | None,
) -> dict:
    """Weights, mean, std and mapping as `BackboneConfig` keeps them (see the module docstring):
    weights filled in from the model name, values equal to a package's own set to None.
    Raises ValueError for what cannot work, saying what to give instead."""
    if weights is None:
        weights = packaged_source(model_name)
        if weights is None:
            raise ValueError(
                f"no packaged weights fit {model_name!r} (packaged: efficientnet_lite0/1/2); "
                f"give the weights: a local path, s3://..., or hub"
            )
    mean, std = _channels("mean", mean), _channels("std", std)
    if (mean is None) != (std is None):
        raise ValueError(f"mean and std go together: got mean={mean}, std={std}; give both "
                         f"(e.g. 0.5,0.5,0.5 for TensorFlow-ported weights) or neither")
    if weights_mapping is not None and weights_mapping not in WEIGHT_MAPPINGS:
        raise ValueError(f"weights_mapping must be one of {', '.join(WEIGHT_MAPPINGS)} "
                         f"(or None: the source's own), got {weights_mapping!r}")
    packaged = packaged_weights(weights)
    if packaged is None:
        return {"weights": weights, "mean": mean, "std": std, "weights_mapping": weights_mapping}
    if not packaged.fits(model_name):
        raise ValueError(
            f"weights {weights!r} are for {packaged.model_name}, not {model_name!r}; use "
            f"{packaged_source(model_name) or 'a file or hub'} (or leave the weights unset)"
        )
    if mean is not None and (mean, std) != (packaged.mean, packaged.std):
        raise ValueError(
            f"weights {weights!r} were trained with mean={packaged.mean}, std={packaged.std}; "
            f"got mean={mean}, std={std}, which would give wrong features. Leave mean and std "
            f"unset, or load the file by path to experiment with another normalisation"
        )
    if weights_mapping not in (None, packaged.mapping):
        raise ValueError(f"weights {weights!r} map onto {packaged.model_name} "
                         f"{packaged.mapping}, not {weights_mapping}; leave the mapping unset")
    return {"weights": weights, "mean": None, "std": None, "weights_mapping": None}
