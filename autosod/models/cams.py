"""CAM sources (potnet.md step 2), chosen by name from `CAM_SOURCES`, and the small tensor helpers
they share with the feature extractor. Each source returns non-negative maps (B, C, N) on the
feature grid:

- `classifier`: the model's own linear head applied to its final feature map, S_c = ReLU(w_cᵀ F)
  for the top-`top_classes` classes of the pooled prediction (resized bilinearly to the grid);
- `attention`: ViTs only, the last block's CLS-to-patch attention averaged over heads,
  min-max normalised; C = 1;
- `pca`: any model, projection on the first principal direction of the image's features, sign
  chosen so that the activation mass is the smaller one, min-max normalised; C = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as nnf

from autosod.models.config import BackboneConfig

__all__ = ["CAM_SOURCES", "BackboneOutput", "minmax", "to_grid", "unit"]

_EPS = 1e-12


class BackboneOutput(NamedTuple):
    """What one backbone forward pass gives the CAM sources."""

    feats: torch.Tensor  # (B, N, D)
    grid: tuple[int, int]
    final_map: torch.Tensor  # (B, Df, hf, wf): what the classifier reads before pooling
    logits: torch.Tensor | None  # (B, classes) or None without a head
    cls_attention: torch.Tensor | None  # (B, N) for ViTs when requested


def unit(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x / x.norm(dim=dim, keepdim=True).clamp_min(_EPS)


def to_grid(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, D, h', w') -> (B, D, h, w): average pooling when shrinking, bilinear when growing."""
    if tuple(x.shape[-2:]) == grid:
        return x
    if x.shape[-2] >= grid[0]:
        return nnf.adaptive_avg_pool2d(x, grid)
    return nnf.interpolate(x, size=grid, mode="bilinear", align_corners=False)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each row of (B, N) to [0, 1]."""
    low = x.amin(dim=-1, keepdim=True)
    return (x - low) / (x.amax(dim=-1, keepdim=True) - low).clamp_min(_EPS)


def _classifier_cam(out: BackboneOutput, model: nn.Module, config: BackboneConfig) -> torch.Tensor:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if out.logits is None or not isinstance(head, nn.Linear):
        raise ValueError(
            f"cam 'classifier' needs a linear classification head, but {config.model_name!r} "
            f"has {type(head).__name__}; use cam 'attention' (ViTs) or 'pca'"
        )
    top = out.logits.topk(min(config.top_classes, out.logits.shape[1]), dim=1).indices
    weight = head.weight[top]  # (B, C, Df)
    maps = torch.einsum("bcd,bdhw->bchw", weight, out.final_map).relu()
    return to_grid(maps, out.grid).flatten(2)


def _attention_cam(out: BackboneOutput, model: nn.Module, config: BackboneConfig) -> torch.Tensor:
    if out.cls_attention is None:
        raise ValueError(
            f"cam 'attention' needs a ViT with a CLS token; {config.model_name!r} is not one; "
            f"use cam 'classifier' or 'pca'"
        )
    return minmax(out.cls_attention)[:, None]


def _pca_cam(out: BackboneOutput, model: nn.Module, config: BackboneConfig) -> torch.Tensor:
    centred = out.feats - out.feats.mean(dim=1, keepdim=True)  # (B, N, D)
    _, vectors = torch.linalg.eigh(centred.transpose(1, 2) @ centred)  # ascending eigenvalues
    proj = (centred @ vectors[:, :, -1:]).squeeze(-1)  # (B, N)
    pos, neg = minmax(proj), minmax(-proj)
    smaller = pos.sum(dim=1, keepdim=True) <= neg.sum(dim=1, keepdim=True)
    return torch.where(smaller, pos, neg)[:, None]


CAM_SOURCES: dict[str, Callable[[BackboneOutput, nn.Module, BackboneConfig], torch.Tensor]] = {
    "classifier": _classifier_cam,
    "attention": _attention_cam,
    "pca": _pca_cam,
}
