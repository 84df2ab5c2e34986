"""Steps 2-3 of docs/potnet.md: CAM normalisation, class probabilities, entropy and the split."""

from __future__ import annotations

import math
from typing import Any

from autosod.potnet.xp import array_module

__all__ = ["class_probabilities", "class_scores", "entropy", "entropy_split", "normalise_cams"]


Array = Any


def normalise_cams(cams: Array) -> Array:
    """cams (B, C, N) -> ReLU(cams) / spatial max, (B, C, N) float32 in [0, 1].

    A map that is zero everywhere stays zero.
    """
    xp = array_module(cams)
    cams = xp.maximum(xp.asarray(cams, dtype=xp.float32), 0)
    peak = cams.max(axis=2, keepdims=True)
    return cams / xp.where(peak > 0, peak, 1).astype(xp.float32)


def class_scores(cams_norm: Array) -> Array:
    """cams_norm (B, C, N) -> scores (B, C + 1, N): the C maps, then S_bg = 1 - max_c S_c."""
    xp = array_module(cams_norm)
    background = 1 - cams_norm.max(axis=1, keepdims=True)
    return xp.concatenate([cams_norm, background], axis=1)


def class_probabilities(scores: Array) -> Array:
    """scores (B, C + 1, N) -> P (B, C + 1, N), P_ic = S_c(i) / sum_c' S_c'(i).

    The sum is at least 1 (S_bg + max_c S_c = 1), so P is always defined.
    """
    return scores / scores.sum(axis=1, keepdims=True)


def entropy(probs: Array) -> Array:
    """probs (B, C + 1, N) -> eta (B, N) = -sum_c P log P / log(C + 1), in [0, 1]."""
    xp = array_module(probs)
    num_classes = probs.shape[1]
    safe = xp.where(probs > 0, probs, 1)
    eta = -(probs * xp.log(safe)).sum(axis=1)
    return (eta / math.log(num_classes)).astype(xp.float32)


def entropy_split(
    eta: Array, max_prob: Array, *, quantile: float, tau: float
) -> tuple[Array, Array]:
    """Branch weights from eta (B, N) and max_c P_ic (B, N) -> (low, high), each (B, N) 0/1 float32.

    Pixels with max_prob < tau join neither branch. Among the n eligible pixels of an image,
    the ceil(q (n - 1)) of lowest entropy go to the k-means branch (`low`) and the rest to the
    spectral branch (`high`): with distinct entropies this is exactly eta >= the linear
    q-quantile of eta (NumPy's default). Ties are broken by pixel index, and each branch keeps at
    least one pixel when n >= 2, so that neither is ever empty.
    """
    xp = array_module(eta, max_prob)
    eligible = max_prob >= tau
    count = eligible.sum(axis=1, keepdims=True).astype(xp.float64)
    num_low = xp.ceil(quantile * (count - 1) - 1e-9)  # 0.3 * 100 is 30.000000000000004
    num_low = xp.clip(num_low, xp.minimum(count, 1), xp.maximum(count - 1, 0))
    ranked = xp.where(eligible, eta, xp.inf)
    order = xp.argsort(ranked, axis=1, kind="stable")
    rank = xp.argsort(order, axis=1, kind="stable")
    low = eligible & (rank < num_low)
    high = eligible & ~low
    return low.astype(xp.float32), high.astype(xp.float32)
