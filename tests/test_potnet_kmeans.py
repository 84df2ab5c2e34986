"""Spherical k-means against scikit-learn's KMeans on well-separated normalised data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from autosod.potnet.kmeans import (
    kmeans_objective,
    kmeans_plus_plus,
    spherical_kmeans,
    unit_rows,
)


def _clustered(
    seed: int, *, clusters: int, per_cluster: int, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """(B=3, clusters * per_cluster, dim) unit points around random unit centres, shuffled,
    and their true cluster ids (B, clusters * per_cluster)."""
    rng = np.random.default_rng(seed)
    batch, truth = [], []
    for _ in range(3):
        centres = unit_rows(rng.standard_normal((clusters, dim)))
        points = np.repeat(centres, per_cluster, axis=0)
        points = points + 0.08 * rng.standard_normal(points.shape)
        order = rng.permutation(len(points))
        batch.append(unit_rows(points[order]))
        truth.append(np.repeat(np.arange(clusters), per_cluster)[order])
    return np.stack(batch).astype(np.float32), np.stack(truth)


@pytest.mark.parametrize("k", [3, 5])
def test_partitions_agree_with_sklearn(k: int) -> None:
    feats, _ = _clustered(k, clusters=k, per_cluster=60, dim=16)
    result = spherical_kmeans(feats, np.ones(feats.shape[:2], np.float32), k=k, iters=20, seed=0)
    assert result.labels.shape == feats.shape[:2] and result.protos.shape == (3, k, 16)
    np.testing.assert_allclose(np.linalg.norm(result.protos, axis=2), 1.0, atol=1e-5)
    for b in range(3):
        reference = KMeans(n_clusters=k, n_init=10, random_state=0).fit(feats[b]).labels_
        ari = adjusted_rand_score(reference, result.labels[b])
        assert ari >= 0.99, f"image {b}: ARI {ari:.3f} against sklearn KMeans"


def test_zero_weight_points_take_no_part() -> None:
    feats, truth = _clustered(7, clusters=5, per_cluster=40, dim=16)
    # Drop one whole cluster through weights: the other four must still be found.
    weights = (truth != 0).astype(np.float32)
    result = spherical_kmeans(feats, weights, k=4, iters=20, seed=1)
    assert np.all(result.labels[weights == 0] == -1)
    for b in range(3):
        kept = weights[b] > 0
        reference = KMeans(n_clusters=4, n_init=10, random_state=0).fit(
            feats[b], sample_weight=weights[b]
        )
        ari = adjusted_rand_score(reference.labels_[kept], result.labels[b][kept])
        assert ari >= 0.99, f"image {b}: ARI {ari:.3f} with weights"


def test_seeding_is_reproducible_and_draws_weighted_points() -> None:
    feats, _ = _clustered(3, clusters=4, per_cluster=30, dim=8)
    weights = np.zeros(feats.shape[:2], np.float32)
    weights[:, :50] = 1
    seeds = kmeans_plus_plus(feats, weights, k=4, seed=11)
    np.testing.assert_array_equal(seeds, kmeans_plus_plus(feats, weights, k=4, seed=11))
    for b in range(3):
        sims = seeds[b] @ feats[b].T  # each seed is one of the weighted points
        assert np.all(np.isclose(sims[:, :50].max(axis=1), 1.0, atol=1e-5))


def test_restarts_keep_the_tightest_run_per_image() -> None:
    # points spread over the whole sphere: different seeds end in different local optima
    rng = np.random.default_rng(11)
    feats = unit_rows(rng.standard_normal((3, 200, 3))).astype(np.float32)
    weights = np.ones(feats.shape[:2], np.float32)
    singles = [
        spherical_kmeans(feats, weights, k=6, iters=10, seed=5 + 7919 * r) for r in range(4)
    ]
    scores = np.stack([kmeans_objective(feats, weights, s.protos) for s in singles])  # (R, B)
    assert (scores.max(axis=0) > scores[0] + 1e-4).any(), "seeds must matter for this check"
    best = spherical_kmeans(feats, weights, k=6, iters=10, seed=5, restarts=4)
    np.testing.assert_allclose(kmeans_objective(feats, weights, best.protos), scores.max(axis=0))
    for b, r in enumerate(scores.argmax(axis=0)):
        np.testing.assert_array_equal(best.labels[b], singles[r].labels[b])
    one = spherical_kmeans(feats, weights, k=6, iters=10, seed=5, restarts=1)
    np.testing.assert_array_equal(one.protos, singles[0].protos)
    with pytest.raises(ValueError, match="restarts"):
        spherical_kmeans(feats, weights, k=6, iters=10, seed=5, restarts=0)
