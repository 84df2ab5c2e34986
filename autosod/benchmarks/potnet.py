"""`python jobs/benchmark.py potnet`: the batched head against the per-image pipeline a user would
write first (scikit-learn KMeans + SpectralClustering(affinity="precomputed") + `ot.sinkhorn`).

The reference uses each library's defaults as a user would: `KMeans(n_clusters, random_state)`
(n_init="auto", one k-means++ run), `SpectralClustering(n_clusters, affinity="precomputed",
random_state)` (ARPACK, ten k-means runs in the embedding) and `ot.sinkhorn(a, b, M, reg=eps)`;
the cheap NumPy steps (CAM entropy, split, anchors, masses) are shared with the head. Both run
in the same process on the same inputs.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from autosod.potnet import PotnetConfig, run_head, to_numpy
from autosod.potnet.entropy import (
    class_probabilities,
    class_scores,
    entropy,
    entropy_split,
    normalise_cams,
)
from autosod.potnet.fuse import class_anchors, foreground_prototypes, prototype_masses
from autosod.potnet.kmeans import unit_rows

__all__ = ["make_benchmark_inputs", "reference_masks", "run_potnet_benchmark"]

logger = logging.getLogger(__name__)


def make_benchmark_inputs(
    *, batch: int, positions: int, dim: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Clustered features (B, N, D) float32 of an elliptic object with a few parts on a background
    of a few regions, and a coarse, shifted Gaussian CAM (B, 1, N). N must be a square."""
    side = math.isqrt(positions)
    if side * side != positions:
        raise ValueError(f"positions must be a square number (h = w), got {positions}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    common = rng.standard_normal(dim)
    feats = np.empty((batch, positions, dim), np.float32)
    cams = np.empty((batch, 1, positions), np.float32)
    for b in range(batch):
        cy, cx = rng.uniform(0.35, 0.65, size=2)
        ry, rx = rng.uniform(0.15, 0.3, size=2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        region = np.where(inside, 3 + (yy > cy) + 2 * (xx > cx), (yy > 0.5) + 2 * (xx > 0.5))
        centres = 2 * common + rng.standard_normal((7, dim))
        noise = rng.standard_normal((positions, dim))
        feats[b] = centres[region.reshape(-1)] + 0.8 * noise
        sy, sx = cy + rng.choice([-0.1, 0.1]), cx + rng.choice([-0.1, 0.1])
        cams[b, 0] = np.exp(-(((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * 0.2**2))).reshape(-1)
    return feats, cams


def _reference_one(feats: np.ndarray, cams: np.ndarray, config: PotnetConfig) -> np.ndarray:
    """One image, feats (N, D), cams (C, N) -> mask (N,) bool, with sklearn and POT."""
    import ot
    from sklearn.cluster import KMeans, SpectralClustering

    f = unit_rows(feats.astype(np.float32))
    scores = class_scores(normalise_cams(cams[None]))
    probs = class_probabilities(scores)
    low, high = entropy_split(
        entropy(probs), probs.max(axis=1), quantile=config.split_quantile, tau=config.tau
    )
    low_f, high_f = f[low[0] > 0], f[high[0] > 0]
    kmeans = KMeans(n_clusters=config.k_low, random_state=config.seed).fit(low_f)
    aff = np.maximum(high_f @ high_f.T, 0)
    np.fill_diagonal(aff, 0)
    spectral = SpectralClustering(
        n_clusters=config.k_high, affinity="precomputed", random_state=config.seed
    ).fit(aff)
    spectral_protos = np.stack(
        [high_f[spectral.labels_ == j].sum(axis=0) for j in range(config.k_high)]
    )
    protos = unit_rows(np.concatenate([kmeans.cluster_centers_, spectral_protos])[None])
    anchors = class_anchors(f[None], scores)
    valid = (protos * protos).sum(axis=2) > 0.5
    masses = prototype_masses(protos, anchors, valid, temperature=config.temperature)[0]
    cost = (1 - f @ protos[0].T).astype(np.float64)
    row = np.full(len(f), 1 / len(f))
    plan = ot.sinkhorn(row, masses.astype(np.float64), cost, reg=config.eps)
    regenerated = unit_rows((plan.T @ f)[None].astype(np.float32))
    foreground = foreground_prototypes(regenerated, anchors)[0]
    soft = plan[:, foreground].sum(axis=1) / plan.sum(axis=1)
    return soft >= config.mask_threshold


def reference_masks(feats: np.ndarray, cams: np.ndarray, config: PotnetConfig) -> np.ndarray:
    """The per-image reference pipeline over a batch: feats (B, N, D), cams (B, C, N) -> (B, N)."""
    return np.stack([_reference_one(feats[b], cams[b], config) for b in range(len(feats))])


def _time_head(feats: Any, cams: Any, config: PotnetConfig, repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run_head(feats, cams, config)
        mask = to_numpy(result.mask)  # includes the device-to-host copy and sync
        best = min(best, time.perf_counter() - start)
    return best, mask


def run_potnet_benchmark(
    *,
    batch: int,
    positions: list[int],
    dim: int,
    repeats: int,
    backend: str,
    seed: int,
    threads: int | None,
) -> list[dict[str, Any]]:
    """Per size: head ms/image (best of `repeats` on the whole batch) vs the per-image reference
    (one pass), their speedup and the fraction of mask pixels on which the two agree.

    `threads` caps the BLAS/OpenMP threads of both sides (threadpoolctl); None keeps defaults.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return [
            _benchmark_size(batch, size, dim, repeats, backend, seed, threads)
            for size in positions
        ]


def _benchmark_size(
    batch: int, size: int, dim: int, repeats: int, backend: str, seed: int, threads: int | None
) -> dict[str, Any]:
    config = PotnetConfig(seed=seed)
    feats, cams = make_benchmark_inputs(batch=batch, positions=size, dim=dim, seed=seed)
    if backend == "cupy":
        import cupy

        head_in = (cupy.asarray(feats), cupy.asarray(cams))
    elif backend == "numpy":
        head_in = (feats, cams)
    else:
        raise ValueError(f"backend must be 'numpy' or 'cupy', got {backend!r}")
    run_head(head_in[0][:2], head_in[1][:2], config)  # warm-up (CuPy kernels, BLAS)
    head_s, head_mask = _time_head(*head_in, config, repeats)
    start = time.perf_counter()
    ref_mask = reference_masks(feats, cams, config)
    ref_s = time.perf_counter() - start
    row = {
        "positions": size,
        "batch": batch,
        "dim": dim,
        "backend": backend,
        "threads": threads,
        "head_ms_per_image": 1e3 * head_s / batch,
        "reference_ms_per_image": 1e3 * ref_s / batch,
        "speedup": ref_s / head_s,
        "mask_agreement": float((head_mask == ref_mask).mean()),
    }
    logger.info("potnet benchmark: %s", row)
    return row
