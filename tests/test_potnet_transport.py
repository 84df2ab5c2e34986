"""Log-domain Sinkhorn against POT's `ot.sinkhorn`."""

from __future__ import annotations

import numpy as np
import ot

from autosod.potnet.kmeans import unit_rows
from autosod.potnet.transport import cosine_cost, sinkhorn_log, transport_cost


def _problem(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    feats = unit_rows(rng.standard_normal((3, 120, 16)))
    protos = unit_rows(rng.standard_normal((3, 6, 16)))
    cost = cosine_cost(feats, protos)
    row = np.full((3, 120), 1 / 120, np.float32)
    col = rng.dirichlet(np.ones(6) * 2, size=3).astype(np.float32)
    return cost, row, col


def test_plan_matches_pot_sinkhorn() -> None:
    cost, row, col = _problem(0)
    eps = 0.05
    plan = sinkhorn_log(cost, row, col, eps=eps, iters=1000)
    assert plan.dtype == np.float32 and plan.shape == cost.shape
    for b in range(3):
        reference = ot.sinkhorn(
            row[b].astype(np.float64),
            col[b].astype(np.float64),
            cost[b].astype(np.float64),
            reg=eps,
            numItermax=20000,
            stopThr=1e-9,
            warn=False,
        )
        assert np.abs(plan[b].sum(axis=1) - row[b]).max() < 1e-4
        assert np.abs(plan[b].sum(axis=0) - col[b]).max() < 1e-4
        distance = np.abs(plan[b] - reference).sum()
        assert distance < 1e-3, f"image {b}: L1 distance to ot.sinkhorn {distance:.2e}"
        expected_cost = (reference * cost[b]).sum()
        assert abs(transport_cost(plan, cost)[b] - expected_cost) < 1e-3


def test_zero_mass_prototype_receives_nothing() -> None:
    cost, row, col = _problem(1)
    col[:, 2] = 0
    col /= col.sum(axis=1, keepdims=True)
    plan = sinkhorn_log(cost, row, col, eps=0.05, iters=200)
    assert np.isfinite(plan).all()
    assert plan[:, :, 2].max() < 1e-12
    np.testing.assert_allclose(plan.sum(axis=2), row, atol=1e-6)
