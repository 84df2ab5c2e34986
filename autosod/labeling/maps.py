"""Full-size maps from the head's grid output: bilinear upsampling, the 8-bit soft map and the
bit-packed mask, on whichever device the grid soft map lives (torch only: no timm, no Ray).

The labelling actor runs `full_size` on its device and copies the uint8 results to the host once
per batch (`to_host`); the encode tasks run the same function on the CPU for images left at the
grid, and `unpack_mask` there. One function on every path, so a mask never depends on where it
was made (beyond the device's float rounding).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as nnf

__all__ = ["full_size", "map_bytes", "pack_mask", "to_host", "upsample_grid"]

_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # np.packbits order: the first pixel is the MSB


def upsample_grid(soft: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """soft (N,) on the grid -> (H, W) bilinear (align_corners=False), clipped to [0, 1]."""
    image = soft.reshape(1, 1, *grid)
    return nnf.interpolate(image, size=size, mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) bool -> (H, ceil(W / 8)) uint8, each row packed as `np.packbits(mask, axis=1)`
    (which packs CPU tensors: 100x faster than torch's ops there); `io.mask_codec.unpack_mask`
    undoes it."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.packbits(mask.numpy(), axis=1))
    return _pack_with_torch(mask)


def _pack_with_torch(mask: torch.Tensor) -> torch.Tensor:
    """`pack_mask` in torch ops, on any device (what GPUs run)."""
    height, width = mask.shape
    bits = nnf.pad(mask.to(torch.int32), (0, (-width) % 8)).reshape(height, -1, 8)
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.int32, device=mask.device)
    return (bits * weights).sum(dim=2).to(torch.uint8)


def full_size(soft: torch.Tensor, grid: tuple[int, int], size: tuple[int, int], *,
              threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """soft (N,) on the grid -> (soft map uint8 (H, W) = round(255 s), packed mask of s >=
    threshold (H, ceil(W / 8))), both on soft's device. The mask is taken from the float map,
    not from the rounded one."""
    full = upsample_grid(soft, grid, size)
    return (full * 255).round().to(torch.uint8), pack_mask(full >= threshold)


def map_bytes(height: int, width: int) -> int:
    """Host bytes of one image's full-size maps (soft map + packed mask)."""
    return height * width + height * ((width + 7) // 8)


def to_host(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """uint8 tensors on one device -> numpy arrays on the host, with one device-to-host copy (a
    flat concatenation, split again into views); CPU tensors are shared, not copied."""
    if not tensors:
        return []
    if tensors[0].device.type == "cpu":
        return [t.numpy() for t in tensors]
    flat = torch.cat([t.reshape(-1) for t in tensors]).cpu().numpy()
    out, offset = [], 0
    for tensor in tensors:
        out.append(flat[offset : offset + tensor.numel()].reshape(tuple(tensor.shape)))
        offset += tensor.numel()
    return out
