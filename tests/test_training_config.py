"""Training configuration: validation messages, presets by name, fingerprints, import rules."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from autosod.training.config import (
    PRESETS,
    AugmentConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
    preset,
)


def test_config_and_numpy_modules_import_neither_torch_nor_ray() -> None:
    code = (
        "import sys; import autosod.training.config, autosod.training.augment, "
        "autosod.training.weighting; "
        "print(sorted(m for m in ('torch', 'ray', 'timm', 'typer') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_presets_by_name() -> None:
    assert set(PRESETS) == {"small", "base"}
    small, base = preset("small"), preset("base")
    assert small == TrainConfig()  # the dataclass defaults are the small preset
    assert base.model.decoder_layers > small.model.decoder_layers
    assert base.model.queries > small.model.queries
    assert preset("small", epochs=3, lr=None).epochs == 3  # None means "not given"
    with pytest.raises(ValueError, match="unknown preset 'huge'; valid: small, base"):
        preset("huge")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ModelConfig(decoder="unet"), "decoder must be one of query, fpn, got 'unet'"),
        (lambda: ModelConfig(input_size_px=250), "multiple of 32.*got 250"),
        (lambda: ModelConfig(hidden_dim=30, heads=4), r"hidden_dim \(30\).*heads \(4\)"),
        (lambda: ModelConfig(output_stride=16), "output_stride must be 4 or 8, got 16"),
        (lambda: ModelConfig(queries=0), "queries must be an integer >= 1, got 0"),
        (lambda: LossConfig(mask_queries="top"), "mask_queries must be one of all, best"),
        (lambda: LossConfig(bce_weight=0, dice_weight=0), "cannot both be 0"),
        (lambda: LossConfig(rank_margin=-1), "rank_margin must be a number >= 0, got -1"),
        (lambda: AugmentConfig(flip_prob=1.5), r"flip_prob must be a probability.*1.5"),
        (lambda: TrainConfig(lr=0), "lr must be > 0, got 0"),
        (lambda: TrainConfig(batch_size=0), "batch_size must be an integer >= 1, got 0"),
        (lambda: TrainConfig(model=LossConfig()), "model must be a ModelConfig"),
    ],
)
def test_invalid_values_are_named(make, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_model_config_json_round_trip_and_fingerprint() -> None:
    config = ModelConfig(queries=7, feature_indices=(2, 3, 4))
    assert ModelConfig.from_json(config.to_json()) == config
    assert config.fingerprint() == dataclasses.replace(config, input_size_px=512).fingerprint()
    assert config.fingerprint() == dataclasses.replace(config, weights="hub").fingerprint()
    assert config.fingerprint() != dataclasses.replace(config, queries=8).fingerprint()
    assert config.fingerprint() != dataclasses.replace(config, decoder="fpn").fingerprint()
    with pytest.raises(ValueError, match=r"unknown ModelConfig fields \['colour'\]"):
        ModelConfig.from_json('{"colour": 1}')
