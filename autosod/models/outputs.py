"""What the AutoSOD network returns, and how one soft mask per image is chosen from it."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["NetOutput", "best_query_logits"]


class NetOutput(NamedTuple):
    """Per decoder layer (L), image (B) and query (Q); the FPN decoder has L = Q = 1."""

    masks: torch.Tensor  # (L, B, Q, h, w) mask logits at the pixel decoder's stride
    scores: torch.Tensor  # (L, B, Q) objectness logits (zeros for the FPN decoder)


def best_query_logits(output: NetOutput) -> torch.Tensor:
    """(B, h, w): the last layer's mask logits of each image's highest-objectness query."""
    masks, scores = output.masks[-1], output.scores[-1]  # (B, Q, h, w), (B, Q)
    best = scores.argmax(dim=1)
    return masks[torch.arange(masks.shape[0], device=masks.device), best]
