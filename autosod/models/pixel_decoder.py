"""FPN-style pixel decoder: multi-scale backbone features fused top-down to one stride-4/8 map.

Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017: a 1x1 lateral projection
per level, the coarser result upsampled (bilinear) and added, a 3x3 convolution after each sum.
The finest level used is the finest at or above `output_stride`; if every level is coarser (a
ViT), the fused map is upsampled to the output stride. The output is the per-pixel embedding the
mask heads read (MaskFormer: Cheng, Schwing and Kirillov, NeurIPS 2021).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as nnf

__all__ = ["PixelDecoder", "conv_norm_relu"]


def conv_norm_relu(in_dim: int, out_dim: int, kernel: int = 3) -> nn.Sequential:
    """Conv (no bias) + GroupNorm + ReLU; GroupNorm because batches per worker are small."""
    return nn.Sequential(
        nn.Conv2d(in_dim, out_dim, kernel, padding=kernel // 2, bias=False),
        nn.GroupNorm(math.gcd(32, out_dim), out_dim),
        nn.ReLU(inplace=True),
    )


class PixelDecoder(nn.Module):
    """[(B, C_i, H / s_i, W / s_i)] fine to coarse -> (B, dim, H / output_stride, ...)."""

    def __init__(
        self, in_channels: list[int], strides: list[int], *, dim: int, output_stride: int
    ) -> None:
        super().__init__()
        if len(in_channels) != len(strides) or not strides:
            raise ValueError(f"need one stride per level, got {in_channels} and {strides}")
        used = [i for i, s in enumerate(strides) if s >= output_stride]
        self.first = used[0] if used else len(strides) - 1  # finest level that is used
        self.output_stride = output_stride
        levels = in_channels[self.first :]
        self.lateral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, 1, bias=False), nn.GroupNorm(math.gcd(32, dim), dim))
            for c in levels
        )
        self.smooth = nn.ModuleList(conv_norm_relu(dim, dim) for _ in levels[:-1])
        self.out = nn.Sequential(conv_norm_relu(dim, dim), nn.Conv2d(dim, dim, 1))

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """`size`: the input image's (H, W), to place the output at H / output_stride."""
        feats = feats[self.first :]
        x = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            lateral = self.lateral[i](feats[i])
            up = nnf.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            x = self.smooth[i](lateral + up)
        target = (size[0] // self.output_stride, size[1] // self.output_stride)
        if tuple(x.shape[-2:]) != target:
            x = nnf.interpolate(x, size=target, mode="bilinear", align_corners=False)
        return self.out(x)
