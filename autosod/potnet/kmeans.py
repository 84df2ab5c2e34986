"""Step 4 of docs/potnet.md: batched spherical k-means with k-means++ seeding and pixel weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autosod.potnet.xp import array_module, host_uniform

__all__ = [
    "KMeansResult",
    "kmeans_objective",
    "kmeans_plus_plus",
    "spherical_kmeans",
    "unit_rows",
]


Array = Any


@dataclass(frozen=True)
class KMeansResult:
    """labels (B, N) int64 nearest prototype of every point (-1 where its weight is 0);
    protos (B, k, D) float32 unit prototypes."""

    labels: Array
    protos: Array


def unit_rows(x: Array) -> Array:
    """x (..., D) -> rows divided by their L2 norm (zero rows stay zero), float32."""
    xp = array_module(x)
    norm = xp.sqrt((x * x).sum(axis=-1, keepdims=True))
    return (x / xp.where(norm > 0, norm, 1)).astype(xp.float32)


def _sample(prob: Array, uniform: Array) -> Array:
    """Inverse-CDF draw of one index per row: prob (B, N) >= 0, uniform (B,) in [0, 1) -> (B,)."""
    xp = array_module(prob)
    cdf = xp.cumsum(prob, axis=1)
    target = uniform * cdf[:, -1]
    index = (cdf <= target[:, None]).sum(axis=1)
    return xp.minimum(index, prob.shape[1] - 1)


def kmeans_plus_plus(feats: Array, weights: Array, *, k: int, seed: int) -> Array:
    """k-means++ seeds for unit feats (B, N, D) with weights (B, N) -> protos (B, k, D).

    Draws are proportional to weight x (1 - max cosine to the chosen seeds), the spherical form of
    D^2 (|a - b|^2 = 2 (1 - cos) on the unit sphere). Every image uses the same k uniforms from
    `seed`, so an image's seeds do not depend on the batch it is in. When every weighted point
    already coincides with a seed, the next draw falls back to the weights alone.
    """
    xp = array_module(feats, weights)
    batch = feats.shape[0]
    uniforms = host_uniform(xp, seed=seed, shape=(k,))
    rows = xp.arange(batch)
    first = _sample(weights, xp.broadcast_to(uniforms[0], (batch,)))
    protos = [feats[rows, first]]
    best_sim = (feats @ protos[0][:, :, None])[:, :, 0]
    for j in range(1, k):
        prob = weights * xp.maximum(1 - best_sim, 0)
        prob = xp.where(prob.sum(axis=1, keepdims=True) > 0, prob, weights)
        chosen = _sample(prob, xp.broadcast_to(uniforms[j], (batch,)))
        protos.append(feats[rows, chosen])
        best_sim = xp.maximum(best_sim, (feats @ protos[-1][:, :, None])[:, :, 0])
    return xp.stack(protos, axis=1)


def _lloyd(feats: Array, weights: Array, protos: Array, *, iters: int) -> Array:
    """`iters` Lloyd steps from protos (B, k, D); a prototype without members keeps its value."""
    xp = array_module(feats, weights, protos)
    eye = xp.eye(protos.shape[1], dtype=xp.float32)
    for _ in range(iters):
        labels = xp.argmax(feats @ protos.transpose(0, 2, 1), axis=2)
        members = eye[labels] * weights[:, :, None]  # (B, N, k)
        sums = members.transpose(0, 2, 1) @ feats  # (B, k, D)
        norm = xp.sqrt((sums * sums).sum(axis=2, keepdims=True))
        protos = xp.where(norm > 0, sums / xp.where(norm > 0, norm, 1), protos)
    return protos


def kmeans_objective(feats: Array, weights: Array, protos: Array) -> Array:
    """Weighted sum over points of the cosine to the most similar prototype (B,): higher is
    tighter (the spherical form of the within-cluster sum of squares)."""
    return ((feats @ protos.transpose(0, 2, 1)).max(axis=2) * weights).sum(axis=1)


def spherical_kmeans(
    feats: Array, weights: Array, *, k: int, iters: int, seed: int, restarts: int = 1
) -> KMeansResult:
    """Cosine k-means of unit feats (B, N, D) with pixel weights (B, N) -> KMeansResult.

    k-means++ seeding, then `iters` Lloyd steps: assign each point to its most similar
    prototype, set each prototype to the unit weighted mean of its members. A prototype that
    loses all its members keeps its previous value. With `restarts` > 1 the seeding and Lloyd
    steps run again from seeds `seed + 7919 r` and each image keeps the run with the highest
    `kmeans_objective` (as scikit-learn's `n_init`). Points of weight 0 take no part in seeding
    or updates but still receive a label of -1.
    """
    if not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    xp = array_module(feats, weights)
    feats = xp.asarray(feats, dtype=xp.float32)
    weights = xp.asarray(weights, dtype=xp.float32)
    protos, best = None, None
    for run in range(restarts):
        start = kmeans_plus_plus(feats, weights, k=k, seed=seed + 7919 * run)
        candidate = _lloyd(feats, weights, start, iters=iters)
        score = kmeans_objective(feats, weights, candidate)
        if protos is None:
            protos, best = candidate, score
        else:
            better = score > best
            protos = xp.where(better[:, None, None], candidate, protos)
            best = xp.where(better, score, best)
    labels = xp.argmax(feats @ protos.transpose(0, 2, 1), axis=2)
    labels = xp.where(weights > 0, labels, -1)
    return KMeansResult(labels=labels, protos=protos.astype(xp.float32))
