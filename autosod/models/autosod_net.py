"""The AutoSOD saliency network: timm backbone -> pixel decoder -> query or FPN mask decoder.

`build_network(config)` builds it by name (`config.decoder`, a key of `DECODERS`):

- `query`: `QueryDecoder` over the backbone's last feature map; inference keeps the soft mask of
  the last layer's highest-objectness query.
- `fpn`: one mask head on the pixel decoder's embedding (no queries, L = Q = 1): the baseline
  that measures what the queries add.

Inference (`predict`) takes uint8 images at one square size and returns each soft mask (sigmoid)
bilinearly upsampled to that image's original size, optionally averaged with the prediction of
the horizontally flipped image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as nnf

from autosod.models.multiscale import MultiScaleBackbone, build_backbone
from autosod.models.net_config import ModelConfig
from autosod.models.outputs import (
    Inference,
    NetOutput,
    best_query_logits,
    best_query_objectness,
)
from autosod.models.pixel_decoder import PixelDecoder, conv_norm_relu
from autosod.models.query_decoder import QueryDecoder

__all__ = ["DECODERS", "AutoSodNet", "FpnDecoder", "build_network"]


class FpnDecoder(nn.Module):
    """memory (unused) + pixel embedding (B, P, h, w) -> NetOutput with L = Q = 1."""

    def __init__(self, pixel_dim: int) -> None:
        super().__init__()
        self.head = nn.Sequential(conv_norm_relu(pixel_dim, pixel_dim), nn.Conv2d(pixel_dim, 1, 1))

    def forward(self, memory: torch.Tensor, pixel: torch.Tensor) -> NetOutput:
        masks = self.head(pixel)[None]  # (1, B, 1, h, w)
        return NetOutput(masks=masks, scores=masks.new_zeros(masks.shape[:3]))


def _query_decoder(config: ModelConfig, memory_channels: int) -> nn.Module:
    return QueryDecoder(
        memory_channels=memory_channels,
        pixel_dim=config.pixel_dim,
        hidden_dim=config.hidden_dim,
        layers=config.decoder_layers,
        queries=config.queries,
        heads=config.heads,
        ffn_dim=config.ffn_dim,
        dropout=config.dropout,
    )


def _fpn_decoder(config: ModelConfig, memory_channels: int) -> nn.Module:
    return FpnDecoder(config.pixel_dim)


DECODERS: dict[str, Callable[[ModelConfig, int], nn.Module]] = {
    "query": _query_decoder,
    "fpn": _fpn_decoder,
}


class AutoSodNet(nn.Module):
    """Normalised images (B, 3, H, W) -> `NetOutput`; `predict` for uint8 images."""

    def __init__(self, config: ModelConfig, backbone: MultiScaleBackbone) -> None:
        super().__init__()
        if config.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {config.decoder!r}; valid: {', '.join(DECODERS)}")
        self.config = config
        self.backbone = backbone
        self.pixel_decoder = PixelDecoder(
            backbone.channels,
            backbone.strides,
            dim=config.pixel_dim,
            output_stride=config.output_stride,
        )
        self.decoder = DECODERS[config.decoder](config, backbone.channels[-1])

    def forward(self, x: torch.Tensor) -> NetOutput:
        return self._forward(x)[0]

    def _forward(self, x: torch.Tensor) -> tuple[NetOutput, torch.Tensor]:
        feats = self.backbone(x)
        pixel = self.pixel_decoder(feats, size=(x.shape[-2], x.shape[-1]))
        return self.decoder(feats[-1], pixel), feats[-1]

    def preprocess(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> normalised float32 (B, 3, H, W) on the model's device."""
        return self.backbone.preprocess(images)

    @torch.no_grad()
    def infer(self, images: torch.Tensor | np.ndarray, *, flip_average: bool) -> Inference:
        """uint8 (B, S, S, 3) -> the chosen query's probabilities (B, S / stride, S / stride),
        its objectness (B,) and the backbone's last features; with `flip_average`, probabilities
        and objectness are the means over the image and its horizontal flip."""
        x = self.preprocess(images)
        output, memory = self._forward(x)
        probs = best_query_logits(output).float().sigmoid()
        objectness = best_query_objectness(output)
        if flip_average:
            flipped = self(x.flip(-1))
            probs = (probs + best_query_logits(flipped).float().sigmoid().flip(-1)) / 2
            objectness = (objectness + best_query_objectness(flipped)) / 2
        return Inference(probs=probs, objectness=objectness, memory=memory)

    @torch.no_grad()
    def soft_masks(self, images: torch.Tensor | np.ndarray, *, flip_average: bool) -> torch.Tensor:
        """uint8 (B, S, S, 3) -> probabilities (B, S / stride, S / stride) of the chosen query."""
        return self.infer(images, flip_average=flip_average).probs

    @torch.no_grad()
    def predict(
        self,
        images: torch.Tensor | np.ndarray,
        sizes: Sequence[tuple[int, int]],
        *,
        flip_average: bool = True,
    ) -> list[np.ndarray]:
        """uint8 (B, S, S, 3) and each image's (height, width) -> float32 soft masks in [0, 1]
        at those sizes (bilinear upsampling of the stride-4/8 probabilities)."""
        if len(sizes) != len(images):
            raise ValueError(f"need one size per image, got {len(sizes)} for {len(images)}")
        probs = self.soft_masks(images, flip_average=flip_average)
        out = []
        for prob, (height, width) in zip(probs, sizes, strict=True):
            up = nnf.interpolate(
                prob[None, None], size=(int(height), int(width)), mode="bilinear",
                align_corners=False,
            )  # fmt: skip
            out.append(up[0, 0].clamp(0, 1).cpu().numpy())
        return out


def build_network(
    config: ModelConfig, *, pretrained: bool = True, storage_options: Mapping | None = None
) -> AutoSodNet:
    """The network of `config` in train mode; `pretrained` loads the backbone's weights from
    `config.weights` (set False when a checkpoint's weights will be loaded next)."""
    if config.decoder not in DECODERS:
        raise ValueError(f"unknown decoder {config.decoder!r}; valid: {', '.join(DECODERS)}")
    backbone = build_backbone(config, pretrained=pretrained, storage_options=storage_options)
    return AutoSodNet(config, backbone).train()
