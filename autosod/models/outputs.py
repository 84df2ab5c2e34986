"""What the AutoSOD network returns, and how one soft mask per image is chosen from it."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["Inference", "NetOutput", "best_query_logits", "best_query_objectness"]


class NetOutput(NamedTuple):
    """Per decoder layer (L), image (B) and query (Q); the FPN decoder has L = Q = 1."""

    masks: torch.Tensor  # (L, B, Q, h, w) mask logits at the pixel decoder's stride
    scores: torch.Tensor  # (L, B, Q) objectness logits (zeros for the FPN decoder)


def best_query_logits(output: NetOutput) -> torch.Tensor:
    """(B, h, w): the last layer's mask logits of each image's highest-objectness query."""
    masks, scores = output.masks[-1], output.scores[-1]  # (B, Q, h, w), (B, Q)
    best = scores.argmax(dim=1)
    return masks[torch.arange(masks.shape[0], device=masks.device), best]


def best_query_objectness(output: NetOutput) -> torch.Tensor:
    """(B,): sigmoid of the last layer's highest objectness logit (the chosen query's score;
    0.5 for the FPN decoder, whose logits are zeros)."""
    return output.scores[-1].float().amax(dim=1).sigmoid()


class Inference(NamedTuple):
    """What prediction keeps of a forward pass, for B images at one square size S."""

    probs: torch.Tensor  # (B, S / stride, S / stride) float32 soft mask of the chosen query
    objectness: torch.Tensor  # (B,) float32 in [0, 1]: the chosen query's objectness
    memory: torch.Tensor  # (B, C, S / 32, S / 32): the backbone's last features
