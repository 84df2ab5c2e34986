"""The TokenCut-style Ncut baseline against scipy's generalised eigensolver and scikit-learn."""

from __future__ import annotations

import numpy as np
import scipy.linalg
from sklearn.cluster import SpectralClustering
from sklearn.metrics import adjusted_rand_score

from autosod.potnet.ncut import fiedler_vector, ncut_bipartition, tokencut_affinity


def _two_groups(seed: int, sizes: tuple[int, int] = (40, 15), dim: int = 16) -> np.ndarray:
    """Unit features: group 0 near e0, group 1 near e1 (orthogonal directions), light noise."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim, dtype=np.float32)[:2]
    rows = [centres[g] + 0.15 * rng.standard_normal((n, dim)) for g, n in enumerate(sizes)]
    feats = np.concatenate(rows).astype(np.float32)
    return feats / np.linalg.norm(feats, axis=1, keepdims=True)


def test_fiedler_vector_matches_scipy_generalised_eigh() -> None:
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((2, 30, 8)).astype(np.float32)
    aff = tokencut_affinity(feats, tau=0.2, floor=1e-5)
    ours = fiedler_vector(aff)
    for b in range(2):
        a = aff[b].astype(np.float64)
        _, vectors = scipy.linalg.eigh(np.diag(a.sum(1)) - a, np.diag(a.sum(1)))
        ref = vectors[:, 1]
        cos = abs(ours[b] @ ref) / (np.linalg.norm(ours[b]) * np.linalg.norm(ref))
        assert cos > 0.999, f"image {b}: |cos| to scipy's Fiedler vector is {cos:.4f}"


def test_bipartition_splits_two_groups_and_agrees_with_sklearn() -> None:
    feats = np.stack([_two_groups(1), _two_groups(2)])
    fg = ncut_bipartition(feats)
    truth = np.r_[np.zeros(40, bool), np.ones(15, bool)]
    for b in range(2):
        aff = tokencut_affinity(feats[b : b + 1], tau=0.2, floor=1e-5)[0]
        ref = SpectralClustering(n_clusters=2, affinity="precomputed", random_state=0).fit(aff)
        assert adjusted_rand_score(ref.labels_, fg[b]) == 1.0, "partition differs from sklearn"
        assert adjusted_rand_score(truth, fg[b]) == 1.0, "partition misses the two groups"


def test_foreground_is_the_seed_side() -> None:
    feats = _two_groups(3)[None]
    fg = ncut_bipartition(feats)[0]
    vector = fiedler_vector(tokencut_affinity(feats, tau=0.2, floor=1e-5))[0]
    seed = int(np.argmax(np.abs(vector)))
    assert fg[seed], "the position of largest |x| must be foreground"
    assert fg.sum() == 15, f"the small group (15) is the seed's side here, got {fg.sum()}"
