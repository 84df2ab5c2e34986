"""The TokenCut-style normalised-cut bipartition, the baseline every POTNet variant must beat.

Wang et al., "Self-Supervised Transformers for Unsupervised Object Discovery using Normalized
Cut", CVPR 2022: a graph on the feature positions with A_ij = 1 where cos(f_i, f_j) > tau and
a small `floor` elsewhere; the second smallest generalised eigenvector x of (D - A) x = λ D x
splits the positions at its mean, and the side holding the position of largest |x| (the seed) is
the foreground. Batched over images of one grid; NumPy or CuPy.
"""

from __future__ import annotations

from typing import Any

from autosod.potnet.kmeans import unit_rows
from autosod.potnet.xp import array_module, batched_eigh

__all__ = ["fiedler_vector", "ncut_bipartition", "tokencut_affinity"]


Array = Any


def tokencut_affinity(feats: Array, *, tau: float, floor: float) -> Array:
    """feats (B, N, D) -> A (B, N, N) float32: 1 where cos > tau, `floor` elsewhere."""
    xp = array_module(feats)
    feats = unit_rows(xp.asarray(feats, dtype=xp.float32))
    cos = feats @ feats.transpose(0, 2, 1)
    return xp.where(cos > tau, 1.0, floor).astype(xp.float32)


def fiedler_vector(aff: Array) -> Array:
    """A (B, N, N) symmetric, positive degrees -> x (B, N), the second smallest generalised
    eigenvector of (D - A) x = λ D x, i.e. D^-1/2 v for v the second largest eigenvector of
    D^-1/2 A D^-1/2."""
    xp = array_module(aff)
    inv_sqrt = 1 / xp.sqrt(aff.sum(axis=2))
    norm_aff = inv_sqrt[:, :, None] * aff * inv_sqrt[:, None, :]
    _, vectors = batched_eigh(norm_aff.astype(xp.float64))
    return (vectors[:, :, -2] * inv_sqrt).astype(xp.float32)


def ncut_bipartition(feats: Array, *, tau: float = 0.2, floor: float = 1e-5) -> Array:
    """feats (B, N, D) -> foreground (B, N) bool: the Fiedler vector split at its mean, the
    seed's side (largest |x|) being the foreground (TokenCut's defaults tau 0.2, floor 1e-5)."""
    if not 0 < floor < 1:
        raise ValueError(f"floor must be in (0, 1), got {floor!r}")
    xp = array_module(feats)
    vector = fiedler_vector(tokencut_affinity(feats, tau=tau, floor=floor))
    above = vector > vector.mean(axis=1, keepdims=True)
    seed = xp.argmax(xp.abs(vector), axis=1)
    seed_above = xp.take_along_axis(above, seed[:, None], axis=1)
    return above == seed_above
