"""PotnetConfig: the defaults of docs/potnet.md and validation with helpful messages."""

from __future__ import annotations

import dataclasses

import pytest

from autosod.potnet import PotnetConfig


def test_defaults_are_those_of_potnet_md() -> None:
    config = PotnetConfig()
    # potnet.md's values, except k, eps and t: changed on the evidence in docs/quality.md
    assert (config.k_low, config.k_high, config.split_quantile, config.tau) == (4, 3, 0.5, 0.0)
    assert (config.kmeans_iters, config.eps, config.sinkhorn_iters) == (20, 0.125, 50)
    assert (config.temperature, config.clustering, config.transport) == (0.5, "dual", True)
    assert config.spectral_knn is None and config.mask_threshold == 0.5
    assert config.num_prototypes == 7


def test_is_frozen_and_keyword_only() -> None:
    config = PotnetConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.eps = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        PotnetConfig(4)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("eps", -1.0, "eps must be > 0, got -1.0"),
        ("k_low", 0, "k_low must be an integer >= 1, got 0"),
        ("kmeans_restarts", 0, "kmeans_restarts must be an integer >= 1, got 0"),
        ("clustering", "ward", "clustering must be one of dual, kmeans, spectral, got 'ward'"),
        ("eigensolver", "lobpcg", "eigensolver must be one of eigh, subspace"),
        ("split_quantile", 1.0, "split_quantile must be in"),
        ("spectral_knn", 0, "spectral_knn must be None"),
        ("transport", "yes", "transport must be True or False"),
    ],
)
def test_rejects_bad_values_with_the_value_in_the_message(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PotnetConfig(**{field: value})


def test_replace_keeps_validation() -> None:
    assert dataclasses.replace(PotnetConfig(), clustering="spectral").clustering == "spectral"
    with pytest.raises(ValueError, match="temperature"):
        dataclasses.replace(PotnetConfig(), temperature=0.0)
