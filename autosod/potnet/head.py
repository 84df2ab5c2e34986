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
from autosod.potnet.xp import array_module, host_normal

__all__ = ["NO_SIGNAL_REASONS", "HeadResult", "build_prototypes", "run_head"]


Array = Any

# why the head found nothing to label by in an image: `HeadResult.no_signal` indexes this (0: it
# did find a signal)
NO_SIGNAL_REASONS = (
    "",
    "non-finite value in the features or CAMs",
    "all-zero CAM",
    "the same feature at every position",
    "no valid prototype",
    "non-finite head output",
)
_NON_FINITE_INPUT, _ZERO_CAM, _UNIFORM_FEATURES, _NO_PROTOTYPE, _NON_FINITE_OUTPUT = range(1, 6)
_UNIFORM_COS = 1 - 1e-5  # every unit feature this close to the mean direction: nothing to split


@dataclass(frozen=True)
class HeadResult:
    """Masks and diagnostics at the feature grid, on the device of the inputs.

    soft (B, N) float32 in [0, 1]; mask (B, N) bool; fg_fraction, mean_entropy, transport_cost
    and soft_spread (mean |2 s - 1|: how far the soft map is from 0.5) each (B,) float32;
    no_signal (B,) int8: 0 where the head found a signal, else the index of the reason in
    `NO_SIGNAL_REASONS`. Rows without a signal hold zeros everywhere (never NaN).
    """

    soft: Array
    mask: Array
    fg_fraction: Array
    mean_entropy: Array
    transport_cost: Array
    soft_spread: Array
    no_signal: Array


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


def _screen_inputs(feats: Array, cams: Array) -> tuple[Array, Array, Array]:
    """Rows with a non-finite value or only all-zero CAMs get a reason code and a stand-in input
    (seeded normals and a ramp CAM), so that they cannot break the batch's shared math (an eigh
    of NaN raises); their results are discarded. -> (feats, cams, reason (B,) int8)."""
    xp = array_module(feats, cams)
    finite = xp.isfinite(feats).all(axis=(1, 2)) & xp.isfinite(cams).all(axis=(1, 2))
    peak = xp.where(finite[:, None, None], cams, 0).max(axis=(1, 2))
    reason = xp.where(finite, xp.where(peak > 0, 0, _ZERO_CAM), _NON_FINITE_INPUT)
    usable = (reason == 0)[:, None, None]
    stand_feats = host_normal(xp, seed=0, shape=(1, *feats.shape[1:]))
    ramp = xp.linspace(0, 1, cams.shape[2], dtype=xp.float32)
    stand_cams = xp.broadcast_to(ramp, (1, *cams.shape[1:]))
    feats = xp.where(usable, feats, stand_feats)
    cams = xp.where(usable, cams, stand_cams)
    return feats, cams, reason.astype(xp.int8)


def run_head(feats: Array, cams: Array, config: PotnetConfig) -> HeadResult:
    """feats (B, N, D), cams (B, C, N) non-negative maps (NumPy or CuPy) -> HeadResult.

    Features are unit-normalised and each CAM divided by its spatial maximum here; the result
    stays at the feature grid and on the inputs' device. An image with a non-finite input, only
    all-zero CAMs, the same feature everywhere, no valid prototype or a non-finite result gets a
    `no_signal` reason and zeros.
    """
    _check_inputs(feats, cams)
    xp = array_module(feats, cams)
    feats, cams, reason = _screen_inputs(
        xp.asarray(feats, dtype=xp.float32), xp.asarray(cams, dtype=xp.float32)
    )
    feats = unit_rows(feats)
    center = unit_rows(feats.mean(axis=1))  # (B, D)
    uniform = (feats * center[:, None, :]).sum(axis=2).min(axis=1) > _UNIFORM_COS
    reason = xp.where((reason == 0) & uniform, _UNIFORM_FEATURES, reason)
    scores = class_scores(normalise_cams(cams))
    probs = class_probabilities(scores)
    eta = entropy(probs)
    low, high = entropy_split(
        eta, probs.max(axis=1), quantile=config.split_quantile, tau=config.tau
    )
    protos, valid = build_prototypes(feats, low, high, config)
    anchors = class_anchors(feats, scores)
    soft, cost = _assign(feats, protos, valid, anchors, config)
    mean_entropy = eta.mean(axis=1)
    finite = xp.isfinite(soft).all(axis=1) & xp.isfinite(cost) & xp.isfinite(mean_entropy)
    reason = xp.where(reason != 0, reason,
                      xp.where(~valid.any(axis=1), _NO_PROTOTYPE,
                               xp.where(finite, 0, _NON_FINITE_OUTPUT))).astype(xp.int8)
    signal = reason == 0
    soft = xp.where(signal[:, None], soft, 0).astype(xp.float32)
    mask = (soft >= config.mask_threshold) & signal[:, None]

    def kept(values: Array) -> Array:
        return xp.where(signal, values, 0).astype(xp.float32)

    return HeadResult(
        soft=soft,
        mask=mask,
        fg_fraction=kept(mask.mean(axis=1)),
        mean_entropy=kept(mean_entropy),
        transport_cost=kept(cost),
        soft_spread=kept(xp.abs(2 * soft - 1).mean(axis=1)),
        no_signal=reason,
    )
