"""Spectral clustering against scikit-learn's SpectralClustering(affinity="precomputed")."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import SpectralClustering
from sklearn.metrics import adjusted_rand_score
from synthetic_scenes import make_batch

from autosod.potnet.kmeans import unit_rows
from autosod.potnet.spectral import affinity, spectral_clustering

OPTIONS = {"subspace_iters": 30, "subspace_oversample": 4, "kmeans_iters": 20, "seed": 0}


def _clustered(seed: int, *, clusters: int, per_cluster: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    batch = []
    for _ in range(2):
        centres = unit_rows(rng.standard_normal((clusters, 24)))
        points = np.repeat(centres, per_cluster, axis=0) + 0.15 * rng.standard_normal(
            (clusters * per_cluster, 24)
        )
        batch.append(unit_rows(points[rng.permutation(len(points))]))
    return np.stack(batch).astype(np.float32)


def _reference_labels(feats: np.ndarray, k: int) -> np.ndarray:
    """sklearn on the affinity built independently: max(0, cos), zero diagonal."""
    aff = np.maximum(feats.astype(np.float64) @ feats.T.astype(np.float64), 0)
    np.fill_diagonal(aff, 0)
    model = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=0)
    return model.fit(aff).labels_


@pytest.mark.parametrize("eigensolver", ["eigh", "subspace"])
def test_partitions_agree_with_sklearn(eigensolver: str) -> None:
    feats = _clustered(1, clusters=4, per_cluster=50)
    weights = np.ones(feats.shape[:2], np.float32)
    result = spectral_clustering(
        feats, weights, k=4, knn=None, eigensolver=eigensolver, **OPTIONS
    )
    assert result.protos.shape == (2, 4, 24)
    for b in range(2):
        ari = adjusted_rand_score(_reference_labels(feats[b], 4), result.labels[b])
        assert ari >= 0.95, f"image {b}, {eigensolver}: ARI {ari:.3f} against sklearn"


def test_branch_weights_select_the_pixels_clustered() -> None:
    feats = _clustered(2, clusters=3, per_cluster=60)
    weights = np.zeros(feats.shape[:2], np.float32)
    weights[0, ::2] = 1
    weights[1, :100] = 1
    result = spectral_clustering(feats, weights, k=3, knn=None, eigensolver="subspace", **OPTIONS)
    assert np.all(result.labels[weights == 0] == -1)
    for b in range(2):
        kept = weights[b] > 0
        ari = adjusted_rand_score(_reference_labels(feats[b][kept], 3), result.labels[b][kept])
        assert ari >= 0.95, f"image {b}: ARI {ari:.3f} on the weighted subset"


def test_subspace_solver_matches_eigh_on_scene_features() -> None:
    feats, _, _ = make_batch([0, 1, 2, 3])
    feats = unit_rows(feats)
    weights = np.ones(feats.shape[:2], np.float32)
    exact = spectral_clustering(feats, weights, k=4, knn=None, eigensolver="eigh", **OPTIONS)
    fast = spectral_clustering(feats, weights, k=4, knn=None, eigensolver="subspace", **OPTIONS)
    for b in range(4):
        ari = adjusted_rand_score(exact.labels[b], fast.labels[b])
        assert ari >= 0.9, f"image {b}: subspace vs eigh partitions ARI {ari:.3f}"


def test_knn_affinity_is_symmetric_and_sparse() -> None:
    feats = _clustered(3, clusters=3, per_cluster=30)
    aff = affinity(feats, np.ones(feats.shape[:2], np.float32), knn=5)
    np.testing.assert_array_equal(aff, aff.transpose(0, 2, 1))
    assert np.all(np.diagonal(aff, axis1=1, axis2=2) == 0)
    assert np.all((aff > 0).sum(axis=2) >= 5)
    assert (aff > 0).mean() < 0.2
