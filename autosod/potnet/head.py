"""The POTNet head: docs/potnet.md steps 2-9 for a batch of images at the feature grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autosod.potnet.config import PotnetConfig
from autosod.potnet.entropy import (
    class_probabilities,
    class_scores,
    entropy,
    entropy_split,
    normalise_cams,
)
from autosod.potnet.fuse import class_anchors, foreground_prototypes, prototype_masses
from autosod.potnet.kmeans import spherical_kmeans, unit_rows
from autosod.potnet.spectral import gather_members, spectral_clustering
from autosod.potnet.transport import cosine_cost, sinkhorn_log, transport_cost
from autosod.potnet.xp import array_module

__all__ = ["HeadResult", "build_prototypes", "run_head"]


Array = Any


@dataclass(frozen=True)
class HeadResult:
    """Masks and diagnostics at the feature grid, on the device of the inputs.

    soft (B, N) float32 in [0, 1]; mask (B, N) bool; fg_fraction, mean_entropy, transport_cost
    and soft_spread (mean |2 s - 1|: how far the soft map is from 0.5) each (B,) float32.
    """

    soft: Array
    mask: Array
    fg_fraction: Array
    mean_entropy: Array
    transport_cost: Array
    soft_spread: Array


def _check_inputs(feats: Array, cams: Array) -> None:
    if feats.ndim != 3 or cams.ndim != 3:
        raise ValueError(
            f"run_head needs feats (B, N, D) and cams (B, C, N), got shapes "
            f"{tuple(feats.shape)} and {tuple(cams.shape)}"
        )
    if feats.shape[0] != cams.shape[0] or feats.shape[1] != cams.shape[2]:
        raise ValueError(
            f"feats {tuple(feats.shape)} and cams {tuple(cams.shape)} disagree on B or N; "
            "cams must be (B, C, N) on the same grid as feats (B, N, D)"
        )


def _branch_kmeans(feats: Array, weights: Array, *, k: int, config: PotnetConfig) -> Array:
    """k-means prototypes (B, k, D) of the branch pixels only, gathered to save the others' cost
    (the same prototypes as weighting all N pixels, since weight-0 points take no part)."""
    xp = array_module(feats, weights)
    index, sub_weights = gather_members(weights)
    sub_feats = xp.take_along_axis(feats, index[:, :, None], axis=1)
    return spherical_kmeans(
        sub_feats,
        sub_weights,
        k=k,
        iters=config.kmeans_iters,
        seed=config.seed,
        restarts=config.kmeans_restarts,
    ).protos


def build_prototypes(
    feats: Array, low: Array, high: Array, config: PotnetConfig
) -> tuple[Array, Array]:
    """Unit feats (B, N, D) and branch weights (B, N) -> protos (B, K, D) and valid (B, K) bool.

    `dual`: k_low k-means prototypes of `low`, then k_high spectral prototypes of `high`.
    `kmeans` / `spectral`: that branch alone clusters low + high into K = k_low + k_high.
    """
    xp = array_module(feats, low, high)
    spectral_options = {
        "knn": config.spectral_knn,
        "eigensolver": config.eigensolver,
        "subspace_iters": config.subspace_iters,
        "subspace_oversample": config.subspace_oversample,
        "kmeans_iters": config.kmeans_iters,
        "kmeans_restarts": config.kmeans_restarts,
        "seed": config.seed + 1,
    }
    total = config.num_prototypes
    if config.clustering == "kmeans":
        protos = _branch_kmeans(feats, low + high, k=total, config=config)
    elif config.clustering == "spectral":
        protos = spectral_clustering(feats, low + high, k=total, **spectral_options).protos
    else:
        kmeans_protos = _branch_kmeans(feats, low, k=config.k_low, config=config)
        spectral_protos = spectral_clustering(
            feats, high, k=config.k_high, **spectral_options
        ).protos
        protos = xp.concatenate([kmeans_protos, spectral_protos], axis=1)
    valid = (protos * protos).sum(axis=2) > 0.5
    return protos, valid


def _assign(
    feats: Array, protos: Array, valid: Array, anchors: Array, config: PotnetConfig
) -> tuple[Array, Array]:
    """Soft saliency (B, N) and transport cost (B,), with or without optimal transport."""
    xp = array_module(feats, protos)
    cost = cosine_cost(feats, protos)
    if config.transport:
        masses = prototype_masses(protos, anchors, valid, temperature=config.temperature)
        row_mass = xp.full(feats.shape[:2], 1 / feats.shape[1], dtype=xp.float32)
        plan = sinkhorn_log(cost, row_mass, masses, eps=config.eps, iters=config.sinkhorn_iters)
        regenerated = unit_rows(plan.transpose(0, 2, 1) @ feats)
        foreground = foreground_prototypes(regenerated, anchors) & valid
        row_sum = plan.sum(axis=2)
        fg_sum = (plan * foreground[:, None, :]).sum(axis=2)
        soft = fg_sum / xp.where(row_sum > 0, row_sum, 1)
        return soft.astype(xp.float32), transport_cost(plan, cost)
    foreground = foreground_prototypes(protos, anchors) & valid
    masked_cost = xp.where(valid[:, None, :], cost, xp.inf)
    nearest = xp.argmin(masked_cost, axis=2)  # (B, N)
    soft = xp.take_along_axis(foreground, nearest, axis=1).astype(xp.float32)
    nearest_cost = xp.take_along_axis(masked_cost, nearest[:, :, None], axis=2)[:, :, 0]
    return soft, nearest_cost.mean(axis=1).astype(xp.float32)


def run_head(feats: Array, cams: Array, config: PotnetConfig) -> HeadResult:
    """feats (B, N, D), cams (B, C, N) non-negative maps (NumPy or CuPy) -> HeadResult.

    Features are unit-normalised and each CAM divided by its spatial maximum here; the result
    stays at the feature grid and on the inputs' device.
    """
    _check_inputs(feats, cams)
    xp = array_module(feats, cams)
    feats = unit_rows(xp.asarray(feats, dtype=xp.float32))
    scores = class_scores(normalise_cams(cams))
    probs = class_probabilities(scores)
    eta = entropy(probs)
    low, high = entropy_split(
        eta, probs.max(axis=1), quantile=config.split_quantile, tau=config.tau
    )
    protos, valid = build_prototypes(feats, low, high, config)
    anchors = class_anchors(feats, scores)
    soft, cost = _assign(feats, protos, valid, anchors, config)
    mask = soft >= config.mask_threshold
    return HeadResult(
        soft=soft,
        mask=mask,
        fg_fraction=mask.mean(axis=1).astype(xp.float32),
        mean_entropy=eta.mean(axis=1).astype(xp.float32),
        transport_cost=cost,
        soft_spread=xp.abs(2 * soft - 1).mean(axis=1).astype(xp.float32),
    )
