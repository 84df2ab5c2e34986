"""Losses of the AutoSOD network: dice + binary cross-entropy per query, objectness ranking.

For every decoder layer (deep supervision) and every query, the mask loss compares the query's
mask logits with the soft pseudo-mask (resized to the mask resolution by area averaging):

- dice (Milletari, Navab and Ahmadi, "V-Net", 3DV 2016), soft, with +1 smoothing:
  1 − (2 Σ p·t + 1) / (Σ p + Σ t + 1), p = sigmoid(logits);
- binary cross-entropy with the soft target, averaged over pixels.

The ranking loss teaches the objectness score which query to trust (SelfMask, Shin et al. 2022):
for each pair of queries of one image whose mask losses differ, the hinge
max(0, s_worse − s_better + margin), averaged over those pairs. Its gradient lowers the worse
query's score and raises the better one's. (SelfMask's released code appears to order the pair
the other way round, which would push the best mask's score down; this is the intended version.)

Each image's loss is multiplied by its weight (the pseudo-mask's quality score) and the batch
mean is taken over images, so that workers' means average to the global batch's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as nnf

from autosod.models.net_config import LossConfig
from autosod.models.outputs import NetOutput

__all__ = [
    "LossTerms",
    "autosod_loss",
    "bce_loss",
    "dice_loss",
    "ranking_loss",
    "resize_target",
]


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits, target (..., h, w) (target in [0, 1]) -> soft dice loss (...) per mask."""
    probs = logits.sigmoid().flatten(-2)
    target = target.flatten(-2)
    inter = (probs * target).sum(-1)
    return 1 - (2 * inter + 1) / (probs.sum(-1) + target.sum(-1) + 1)


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits, target (..., h, w) (target in [0, 1]) -> mean binary cross-entropy (...) per mask."""
    loss = nnf.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return loss.flatten(-2).mean(-1)


def ranking_loss(scores: torch.Tensor, mask_losses: torch.Tensor, *, margin: float) -> torch.Tensor:
    """scores (B, Q) objectness logits, mask_losses (B, Q) -> (B,) mean pairwise hinge.

    Pair (i, j) with mask_losses[i] < mask_losses[j] (i better) costs
    max(0, scores[j] − scores[i] + margin); images with no such pair (Q = 1) cost 0.
    """
    losses = mask_losses.detach()
    better = losses[:, :, None] < losses[:, None, :]  # [b, i, j]: i is better than j
    hinge = (scores[:, None, :] - scores[:, :, None] + margin).clamp_min(0)  # s_j − s_i + m
    pairs = better.sum(dim=(1, 2))
    total = (hinge * better).sum(dim=(1, 2))
    return total / pairs.clamp_min(1)


def resize_target(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) soft mask in [0, 1] -> (B, h, w), area-averaged (bilinear when growing)."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    mode = "area" if target.shape[-2] >= size[0] else "bilinear"
    return nnf.interpolate(target[:, None], size=size, mode=mode)[:, 0]


class LossTerms(NamedTuple):
    """Weighted batch means (scalars); `total` is what is minimised."""

    total: torch.Tensor
    bce: torch.Tensor
    dice: torch.Tensor
    rank: torch.Tensor


def autosod_loss(
    output: NetOutput,
    target: torch.Tensor,
    weights: torch.Tensor,
    config: LossConfig,
) -> LossTerms:
    """output (L, B, Q, h, w) / (L, B, Q); target (B, H, W) soft mask in [0, 1]; weights (B,).

    Per layer: bce and dice of each query (B, Q); mask loss = weighted sum. With
    `mask_queries="all"` every query's mask loss counts (mean over queries); with "best" only the
    query whose mask loss is lowest. Ranking on the (detached) mask losses. The terms are means
    over the supervised layers; each image's sum is multiplied by its weight and averaged.
    """
    masks, scores = output.masks, output.scores
    target = resize_target(target.to(masks.dtype), tuple(masks.shape[-2:]))
    target = target[:, None].expand_as(masks[0])
    layers = range(masks.shape[0]) if config.deep_supervision else [masks.shape[0] - 1]
    bce_sum = dice_sum = rank_sum = 0
    for layer in layers:
        bce = bce_loss(masks[layer].float(), target)  # (B, Q)
        dice = dice_loss(masks[layer].float(), target)
        mask = config.bce_weight * bce + config.dice_weight * dice
        if config.mask_queries == "best":
            pick = mask.detach().argmin(dim=1, keepdim=True)
            bce, dice = bce.gather(1, pick), dice.gather(1, pick)
        bce_sum = bce_sum + bce.mean(dim=1)
        dice_sum = dice_sum + dice.mean(dim=1)
        rank_sum = rank_sum + ranking_loss(scores[layer].float(), mask, margin=config.rank_margin)
    count = len(layers)
    per_image = [bce_sum / count, dice_sum / count, rank_sum / count]  # each (B,)
    weights = weights.to(per_image[0].dtype)
    bce, dice, rank = ((term * weights).mean() for term in per_image)
    total = config.bce_weight * bce + config.dice_weight * dice + config.rank_weight * rank
    return LossTerms(total=total, bce=bce, dice=dice, rank=rank)
