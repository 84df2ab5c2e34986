"""timm backbones for POTNet: unit-normalised features on one grid plus activation maps (CAMs).

Features (potnet.md step 1) are `(B, N, D)` with N = h·w positions, each unit-normalised:

- ViTs (any timm model with `patch_embed` and prefix tokens): the last block's patch tokens after
  the final norm; the grid is the patch grid at the input size (stride = patch size).
- CNNs: the feature-info stages `stages` (default 0, 1, 2, 3, 4: strides 2, 4, 8, 16, 32; for
  EfficientNet-Lite2 16 + 24 + 48 + 120 + 352 channels, for Lite0 and Lite1 16 + 24 + 40 + 112 +
  320; stages 0-4 were the best set for all three, docs/quality.md), each unit-normalised per
  position, brought
  to the stride-`stride_px` grid (average pooling down, bilinear up), normalised again,
  concatenated and divided by √(number of stages): each stage weighs the same and every position
  has norm 1. Stages 1, 2, 3 beat 2, 3, 4 (the setting of potnet.md) with potnet.md's head;
  1, 2, 3, 4 beat 1, 2, 3 with the first tuned head; adding the stride-2 stage 0 (colour and
  edges) raised GrabCut IoU again (docs/quality.md).

CAM sources (step 2) are in `autosod.models.cams`.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import NamedTuple

import numpy as np
import timm
import torch
from torch import nn

from autosod.models.cams import CAM_SOURCES, BackboneOutput, to_grid, unit
from autosod.models.config import BackboneConfig
from autosod.models.weights import (
    HUB_SOURCE,
    WeightsError,
    check_state_dict,
    load_state_dict,
    packaged_weights,
    remap_in_order,
    resolve_weights,
)

__all__ = ["FeatureExtractor", "Features", "build_model", "normalisation"]

logger = logging.getLogger(__name__)


class Features(NamedTuple):
    """Backbone output for one batch (torch tensors on the model's device)."""

    feats: torch.Tensor  # (B, N, D) float32, unit norm per position
    cams: torch.Tensor  # (B, C, N) float32, non-negative
    grid: tuple[int, int]  # (h, w), N = h·w


def _is_vit(model: nn.Module) -> bool:
    return hasattr(model, "patch_embed") and hasattr(model, "num_prefix_tokens")


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
        logger.info("backbone device auto -> %s", name)
    return torch.device(name)


def _create(config: BackboneConfig, pretrained: bool) -> nn.Module:
    try:  # ViT-like models take the input size, so that the patch grid matches it
        return timm.create_model(
            config.model_name, pretrained=pretrained, img_size=config.input_size
        )
    except TypeError:
        return timm.create_model(config.model_name, pretrained=pretrained)


def _load_file_weights(model: nn.Module, config: BackboneConfig) -> None:
    path = resolve_weights(config.weights, storage_options=config.storage_options)
    state = load_state_dict(path)
    target = model.state_dict()
    packaged = packaged_weights(config.weights)
    mapping = config.weights_mapping or (packaged.mapping if packaged else "by-name")
    if mapping == "in-order":
        state = remap_in_order(state, target)
    else:  # the architecture's own converter (e.g. ViT position embeddings resized to the grid)
        filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
        if filter_fn is not None:
            state = filter_fn(state, model)
    check_state_dict(state, target, origin=config.weights)
    model.load_state_dict(state)
    logger.info("loaded %d tensors for %s from %s (%s)", len(state), config.model_name, path,
                mapping)


def normalisation(config: BackboneConfig, model: nn.Module) -> tuple[tuple, tuple, str]:
    """(mean, std, where they come from): the config's, else the packaged weights', else timm's
    pretrained configuration of the model (ImageNet's for most)."""
    if config.mean is not None and config.std is not None:
        return tuple(config.mean), tuple(config.std), "the config"
    packaged = packaged_weights(config.weights)
    if packaged is not None:
        return packaged.mean, packaged.std, config.weights
    data_config = timm.data.resolve_model_data_config(model)
    return tuple(data_config["mean"]), tuple(data_config["std"]), f"timm's {config.model_name}"


def build_model(config: BackboneConfig) -> tuple[nn.Module, tuple, tuple]:
    """Create the timm model, load `config.weights`; returns (model in eval mode, mean, std).

    Any of the packaged backbones by name: `build_model(BackboneConfig(model_name=
    "efficientnet_lite2"))` loads `package:efficientnet-lite2` with mean = std = 0.5.
    """
    model = _create(config, pretrained=config.weights == HUB_SOURCE)
    if config.weights != HUB_SOURCE:
        _load_file_weights(model, config)
    mean, std, origin = normalisation(config, model)
    logger.info("%s input normalisation: mean %s, std %s (from %s)", config.model_name, mean,
                std, origin)
    return model.eval(), mean, std


class _ClsAttention:
    """Forward hook on a timm `Attention`: CLS-to-patch attention averaged over heads (B, N)."""

    def __init__(self, attn: nn.Module, num_prefix: int) -> None:
        self.attn, self.num_prefix, self.value = attn, num_prefix, None
        attn.register_forward_hook(self)

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        x = args[0]
        B, T, _ = x.shape
        qkv = module.qkv(x).reshape(B, T, 3, module.num_heads, module.head_dim)
        q, k = module.q_norm(qkv[:, :1, 0].transpose(1, 2)), module.k_norm(qkv[:, :, 1])
        scores = (q * module.scale) @ k.permute(0, 2, 3, 1)  # (B, heads, 1, T)
        self.value = scores.softmax(dim=-1)[:, :, 0, self.num_prefix :].mean(dim=1)


class FeatureExtractor:
    """uint8 images (B, S, S, 3) -> `Features`; the model is built and loaded once."""

    def __init__(self, config: BackboneConfig | None = None) -> None:
        self.config = config or BackboneConfig()
        self.device = _resolve_device(self.config.device)
        model, mean, std = build_model(self.config)
        self.model = model.to(self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.vit = _is_vit(self.model)
        self._attention = None
        if self.config.cam == "attention" and self.vit and self.model.num_prefix_tokens > 0:
            attn = self.model.blocks[-1].attn
            if not all(hasattr(attn, a) for a in ("qkv", "num_heads", "head_dim", "scale")):
                raise ValueError(f"cam 'attention' does not support {type(attn).__name__}")
            self._attention = _ClsAttention(attn, self.model.num_prefix_tokens)
        if not self.vit and not hasattr(self.model, "forward_intermediates"):
            raise ValueError(
                f"{self.config.model_name!r} has no forward_intermediates in timm; choose a "
                f"ViT or a CNN that supports it"
            )

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (B, S, S, 3) -> normalised float32 (B, 3, S, S) on the model's device."""
        size = self.config.input_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (size, size, 3):
            raise ValueError(
                f"images must be uint8 (B, {size}, {size}, 3) at the input size, got shape "
                f"{tuple(images.shape)}; resize with autosod.io.decode.resize_to_input"
            )
        x = torch.as_tensor(images, device=self.device).permute(0, 3, 1, 2).float() / 255.0
        return (x - self.mean) / self.std

    def _forward(self, x: torch.Tensor) -> BackboneOutput:
        model = self.model
        if self.vit:
            tokens = model.forward_features(x)  # (B, prefix + N, D), final norm applied
            grid = tuple(int(g) for g in model.patch_embed.grid_size)
            patch = tokens[:, model.num_prefix_tokens :]
            final_map = patch.transpose(1, 2).reshape(x.shape[0], -1, *grid)
            feats = unit(patch, dim=-1)
        else:
            size = self.config.input_size // self.config.stride_px
            grid = (size, size)
            final, stages = model.forward_intermediates(x, indices=list(self.config.stages))
            maps = [unit(to_grid(unit(s, dim=1), grid), dim=1) for s in stages]
            feats = torch.cat(maps, dim=1).flatten(2).transpose(1, 2) / math.sqrt(len(maps))
            final_map, tokens = final, final
        logits = model.forward_head(tokens) if getattr(model, "num_classes", 0) else None
        attention = self._attention.value if self._attention is not None else None
        return BackboneOutput(feats.contiguous(), grid, final_map, logits, attention)

    @torch.no_grad()
    def __call__(self, images: np.ndarray | torch.Tensor) -> Features:
        """uint8 (B, S, S, 3) -> Features(feats (B, N, D), cams (B, C, N), grid)."""
        out = self._forward(self.preprocess(images))
        cams = CAM_SOURCES[self.config.cam](out, self.model, self.config)
        return Features(out.feats.float(), cams.float().contiguous(), out.grid)

    def logits(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Class scores (B, classes) of the model's own head, for checking the weights."""
        with torch.no_grad():
            out = self._forward(self.preprocess(images))
        if out.logits is None:
            raise WeightsError(f"{self.config.model_name!r} has no classification head")
        return out.logits
