"""Step 7 of docs/potnet.md: batched entropic optimal transport by log-domain Sinkhorn."""

from __future__ import annotations

from typing import Any

from autosod.potnet.xp import array_module

__all__ = ["cosine_cost", "sinkhorn_log", "transport_cost"]


Array = Any

# log of a zero mass: finite, so that empty prototypes never turn the potentials into NaN.
_LOG_TINY = -80.0


def _logsumexp_inplace(x: Array, axis: int) -> Array:
    """log sum exp of x (B, N, K) along `axis`; overwrites x (it is a scratch buffer)."""
    xp = array_module(x)
    peak = x.max(axis=axis, keepdims=True)
    x -= peak
    xp.exp(x, out=x)
    return xp.log(x.sum(axis=axis)) + peak.squeeze(axis)


def cosine_cost(feats: Array, protos: Array) -> Array:
    """Unit feats (B, N, D), unit protos (B, K, D) -> cost (B, N, K) = 1 - cos, float32."""
    return (1 - feats @ protos.transpose(0, 2, 1)).astype(feats.dtype)


def sinkhorn_log(
    cost: Array, row_mass: Array, col_mass: Array, *, eps: float, iters: int
) -> Array:
    """cost (B, N, K), row_mass (B, N), col_mass (B, K) -> plan (B, N, K), float32.

    Entropic OT min <T, C> - eps H(T) with T 1 = row_mass and T^T 1 = col_mass, solved by
    `iters` alternating log-domain updates of the dual potentials (f, g); the last update is on
    f, so the row marginals hold exactly and the column ones to the solver's accuracy.
    """
    xp = array_module(cost, row_mass, col_mass)
    dtype = cost.dtype
    log_row = xp.where(row_mass > 0, xp.log(xp.where(row_mass > 0, row_mass, 1)), _LOG_TINY)
    log_col = xp.where(col_mass > 0, xp.log(xp.where(col_mass > 0, col_mass, 1)), _LOG_TINY)
    log_row, log_col = log_row.astype(dtype), log_col.astype(dtype)
    scaled = -cost / eps  # (B, N, K)
    f = xp.zeros(row_mass.shape, dtype=dtype)  # potentials divided by eps
    g = xp.zeros(col_mass.shape, dtype=dtype)
    scratch = xp.empty_like(scaled)
    for _ in range(iters):
        xp.add(scaled, f[:, :, None], out=scratch)
        g = log_col - _logsumexp_inplace(scratch, axis=1)
        xp.add(scaled, g[:, None, :], out=scratch)
        f = log_row - _logsumexp_inplace(scratch, axis=2)
    return xp.exp(scaled + f[:, :, None] + g[:, None, :]).astype(dtype)


def transport_cost(plan: Array, cost: Array) -> Array:
    """plan (B, N, K), cost (B, N, K) -> <T, C> (B,) float32."""
    return (plan * cost).sum(axis=(1, 2)).astype(cost.dtype)
