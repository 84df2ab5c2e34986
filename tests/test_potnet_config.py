"""PotnetConfig: validation with helpful messages (its documented defaults:
test_documented_defaults.py)."""

from __future__ import annotations

import dataclasses

import pytest

from autosod.potnet import PotnetConfig


def test_num_prototypes_counts_both_branches() -> None:
    assert PotnetConfig(k_low=2, k_high=5).num_prototypes == 7


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
