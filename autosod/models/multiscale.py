"""A timm backbone as a list of feature maps, fine to coarse, with its input normalisation.

The architecture comes from timm, the weights from the same sources as labelling
(`autosod.backbones.build_model`: `package:efficientnet-lite0` offline, a local path, `s3://`, or
`hub`); mean and std come with the weights (the packaged TF-ported Lite0 wants 0.5 / 0.5).
Features are timm's `forward_intermediates` at the feature-info indices of `ModelConfig`
(EfficientNet-Lite0 1, 2, 3, 4: strides 4, 8, 16, 32 with 24, 40, 112, 320 channels; a ViT's
block indices all sit at the patch stride). Layers after the last index, and the classifier,
are pruned, so that every parameter receives a gradient (DDP needs that).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import timm
import torch
from torch import nn

from autosod.models.backbones import build_model
from autosod.models.config import BackboneConfig
from autosod.models.net_config import ModelConfig
from autosod.models.weights import packaged_weights

__all__ = ["MultiScaleBackbone", "build_backbone"]


class MultiScaleBackbone(nn.Module):
    """Normalised float images (B, 3, H, W) -> feature maps [(B, C_i, H / s_i, W / s_i)]."""

    def __init__(self, model: nn.Module, indices: tuple[int, ...], mean: tuple, std: tuple) -> None:
        super().__init__()
        if not hasattr(model, "forward_intermediates"):
            raise ValueError(
                f"{type(model).__name__} has no forward_intermediates in timm; choose a timm "
                f"model that supports it (efficientnet_lite0, resnet50, vit_small_patch8_224...)"
            )
        info = list(model.feature_info)
        if list(indices) != sorted(set(indices)) or indices[-1] >= len(info):
            raise ValueError(
                f"feature_indices must be increasing and < {len(info)} for "
                f"{type(model).__name__}, got {indices}; its stages: "
                f"{[(i, f['reduction'], f['num_chs']) for i, f in enumerate(info)]}"
            )
        model.prune_intermediate_layers(list(indices), prune_head=True)
        self.model = model
        self.indices = list(indices)
        self.channels = [int(info[i]["num_chs"]) for i in indices]
        self.strides = [int(info[i]["reduction"]) for i in indices]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def preprocess(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> normalised float32 (B, 3, H, W) on the backbone's device."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (B, H, W, 3), got shape {tuple(images.shape)}")
        x = torch.as_tensor(images, device=self.mean.device).permute(0, 3, 1, 2).float() / 255.0
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x, indices=self.indices, intermediates_only=True)


def _mean_std(model: nn.Module, weights: str) -> tuple[tuple, tuple]:
    packaged = packaged_weights(weights)
    if packaged is not None:
        return packaged.mean, packaged.std
    data_config = timm.data.resolve_model_data_config(model)
    return tuple(data_config["mean"]), tuple(data_config["std"])


def build_backbone(
    config: ModelConfig, *, pretrained: bool = True, storage_options: Mapping | None = None
) -> MultiScaleBackbone:
    """The backbone of `config`; `pretrained=False` skips loading weights (a checkpoint follows)."""
    if pretrained:
        model, mean, std = build_model(
            BackboneConfig(
                model_name=config.backbone,
                weights=config.weights,
                input_size=config.input_size_px,
                stride_px=32,
                storage_options=storage_options,
            )
        )
    else:
        try:  # ViTs take the input size so that the position embeddings fit the patch grid
            model = timm.create_model(config.backbone, img_size=config.input_size_px)
        except TypeError:
            model = timm.create_model(config.backbone)
        mean, std = _mean_std(model, config.weights)
    return MultiScaleBackbone(model.train(), config.feature_indices, mean, std)
