"""Step 5 of docs/potnet.md: batched spectral clustering of the high-entropy branch.

Affinity A_ij = max(0, cos(f_i, f_j)) among branch pixels (optionally k-nearest-neighbour
sparsified), the normalised operator D^-1/2 A D^-1/2 (whose top eigenvectors are the bottom ones
of L = I - D^-1/2 A D^-1/2), rows of the k eigenvectors normalised, then spherical k-means in
that embedding. Prototypes are unit means of the member features.
"""

from __future__ import annotations

from typing import Any

from autosod.potnet.kmeans import KMeansResult, spherical_kmeans, unit_rows
from autosod.potnet.xp import array_module, batched_eigh, batched_qr, host_normal

__all__ = [
    "affinity",
    "gather_members",
    "normalised_affinity",
    "spectral_clustering",
    "spectral_embedding",
]


Array = Any


def affinity(feats: Array, weights: Array, *, knn: int | None) -> Array:
    """Unit feats (B, M, D), weights (B, M) 0/1 -> A (B, M, M), zero diagonal, float32.

    A_ij = max(0, cos(f_i, f_j)) w_i w_j. With `knn`, each row keeps its knn largest entries
    and A is symmetrised as max(A, A^T).
    """
    xp = array_module(feats, weights)
    size = feats.shape[1]
    aff = feats @ feats.transpose(0, 2, 1)
    xp.maximum(aff, 0, out=aff)
    aff *= weights[:, :, None]
    aff *= weights[:, None, :]
    diagonal = xp.arange(size)
    aff[:, diagonal, diagonal] = 0
    if knn is not None and knn < size - 1:
        kth = -xp.partition(-aff, knn - 1, axis=2)[:, :, knn - 1 : knn]
        aff = xp.where(aff >= kth, aff, 0)
        aff = xp.maximum(aff, aff.transpose(0, 2, 1))
    return aff.astype(xp.float32)


def normalised_affinity(aff: Array) -> Array:
    """A (B, M, M) -> D^-1/2 A D^-1/2 (B, M, M); rows of degree 0 stay zero."""
    xp = array_module(aff)
    degree = aff.sum(axis=2)
    inv_sqrt = xp.where(degree > 0, 1 / xp.sqrt(xp.where(degree > 0, degree, 1)), 0)
    inv_sqrt = inv_sqrt.astype(xp.float32)
    norm_aff = aff * inv_sqrt[:, :, None]
    norm_aff *= inv_sqrt[:, None, :]
    return norm_aff


def spectral_embedding(
    norm_aff: Array, *, k: int, solver: str, iters: int, oversample: int, seed: int
) -> Array:
    """D^-1/2 A D^-1/2 (B, M, M) -> its k top eigenvectors (B, M, k), rows unit-normalised.

    `solver="eigh"`: the batched dense eigendecomposition (reference). `solver="subspace"`:
    `iters` steps of orthogonal (subspace) iteration on k + oversample columns from a seeded
    start, then a Rayleigh-Ritz step that keeps the k largest Ritz values.
    """
    xp = array_module(norm_aff)
    size = norm_aff.shape[1]
    if solver == "eigh":
        _, vectors = batched_eigh(norm_aff)
        return unit_rows(vectors[:, :, -k:])
    if solver != "subspace":
        raise ValueError(f"solver must be 'eigh' or 'subspace', got {solver!r}")
    width = min(k + oversample, size)
    start = host_normal(xp, seed=seed, shape=(size, width))
    basis = batched_qr(norm_aff @ xp.broadcast_to(start, (norm_aff.shape[0], size, width)))
    for _ in range(iters - 1):
        basis = batched_qr(norm_aff @ basis)
    ritz = basis.transpose(0, 2, 1) @ norm_aff @ basis
    _, small_vectors = batched_eigh((ritz + ritz.transpose(0, 2, 1)) / 2)
    return unit_rows(basis @ small_vectors[:, :, -k:])


def gather_members(weights: Array) -> tuple[Array, Array]:
    """weights (B, N) 0/1 -> index (B, M) of each image's members first, and their weights (B, M).

    M is the largest member count in the batch (one host sync); shorter rows are padded with
    non-members of weight 0, which drop out of the affinity.
    """
    xp = array_module(weights)
    size = max(int((weights > 0).sum(axis=1).max()), 1)
    order = xp.argsort(-(weights > 0).astype(xp.int8), axis=1, kind="stable")[:, :size]
    return order, xp.take_along_axis(weights, order, axis=1)


def spectral_clustering(
    feats: Array,
    weights: Array,
    *,
    k: int,
    knn: int | None,
    eigensolver: str,
    subspace_iters: int,
    subspace_oversample: int,
    kmeans_iters: int,
    seed: int,
    kmeans_restarts: int = 1,
) -> KMeansResult:
    """Unit feats (B, N, D), weights (B, N) 0/1 -> KMeansResult with labels (B, N) (-1 outside the
    branch) and protos (B, k, D), the unit means of the member features of each cluster (zero
    for a cluster without members)."""
    xp = array_module(feats, weights)
    index, sub_weights = gather_members(weights)
    sub_feats = xp.take_along_axis(feats, index[:, :, None], axis=1)
    norm_aff = normalised_affinity(affinity(sub_feats, sub_weights, knn=knn))
    embedding = spectral_embedding(
        norm_aff,
        k=k,
        solver=eigensolver,
        iters=subspace_iters,
        oversample=subspace_oversample,
        seed=seed,
    )
    clusters = spherical_kmeans(
        embedding, sub_weights, k=k, iters=kmeans_iters, seed=seed, restarts=kmeans_restarts
    )
    members = (clusters.labels[:, :, None] == xp.arange(k)).astype(xp.float32)
    protos = unit_rows(members.transpose(0, 2, 1) @ sub_feats)
    labels = xp.full(weights.shape, -1, dtype=clusters.labels.dtype)
    labels[xp.arange(weights.shape[0])[:, None], index] = clusters.labels
    labels = xp.where(weights > 0, labels, -1)
    return KMeansResult(labels=labels, protos=protos)
