"""What the store records of the backbone: today's settings hash as before the normalisation and
mapping options existed, and a normalisation or mapping that is set is recorded."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autosod.io.store.schema import config_differences, config_hash
from autosod.labeling.config import build_label_config, labeler_record, parse_channels
from autosod.labeling.job import store_config

# Computed at commit 0b9cfec, before mean, std and weights_mapping existed, for its default
# settings (Lite0 at 368 px): stores written then resume with those settings given, and
# docs/quality.md's figures keep their config hashes.
LITE0_368 = {"model_name": "efficientnet_lite0", "input_size": 368}
LITE0_HASH = "3ab60c9c65682cc6"
# The default since Lite2 at 384 px (docs/quality.md, "Backbones"); pinned from then on.
DEFAULT_HASH = "8662a3db55fb923f"
DINO_SETTING = {"input_size": 320, "stages": (1, 2, 3, 4), "cam": "attention",
                "model_name": "vit_small_patch8_224.dino", "weights": "s3://b/w.pth"}
DINO_HASH = "938e1047dcb4f319"


def _hash(labeler: dict | None = None, potnet: dict | None = None) -> str:
    config = build_label_config(source="imgs", store="st", labeler=labeler, potnet=potnet)
    return config_hash(store_config(config))


def test_existing_settings_keep_their_store_config_hash() -> None:
    assert _hash(LITE0_368) == LITE0_HASH
    assert _hash(DINO_SETTING, {"k_low": 3, "eps": 0.1}) == DINO_HASH
    assert _hash() == DEFAULT_HASH
    # the packaged weights' own normalisation and mapping, given explicitly, change nothing
    own = {"mean": (0.5,) * 3, "std": (0.5,) * 3, "weights_mapping": "in-order"}
    assert _hash({**LITE0_368, **own}) == LITE0_HASH
    assert _hash(own) == DEFAULT_HASH


def test_a_set_normalisation_and_mapping_are_recorded() -> None:
    path = "/models/efficientnet-lite2.pth"
    base = {"model_name": "efficientnet_lite2", "weights": path}
    plain = build_label_config(source="imgs", store="st", labeler=base).labeler
    assert "mean" not in labeler_record(plain) and "weights_mapping" not in labeler_record(plain)
    tf_port = {**base, "weights_mapping": "in-order", "mean": (0.5,) * 3, "std": (0.5,) * 3}
    record = store_config(build_label_config(source="imgs", store="st", labeler=tf_port))
    assert record["labeler"]["mean"] == (0.5, 0.5, 0.5)
    assert record["labeler"]["std"] == (0.5, 0.5, 0.5)
    assert record["labeler"]["weights_mapping"] == "in-order"
    hashes = {_hash(base), _hash(tf_port), _hash({**tf_port, "mean": (0.45, 0.5, 0.5)})}
    assert len(hashes) == 3, "normalisation and mapping must each change the store's config hash"


def test_model_name_given_alone_takes_its_packaged_weights() -> None:
    config = build_label_config(source="imgs", store="st",
                                labeler={"model_name": "efficientnet_lite1", "weights": None})
    assert config.labeler.weights == "package:efficientnet-lite1"
    assert config.labeler.backbone().weights == "package:efficientnet-lite1"


@pytest.mark.parametrize(("text", "expected"), [
    ("0.5", (0.5, 0.5, 0.5)), ("0.485,0.456,0.406", (0.485, 0.456, 0.406))])
def test_parse_channels(text: str, expected: tuple) -> None:
    assert parse_channels(text) == expected


@pytest.mark.parametrize(("labeler", "message"), [
    ({"mean": (0.5,) * 3}, "mean and std go together"),
    ({"mean": (0.5, 0.5), "std": (0.5,) * 3}, "mean must be 3 finite numbers"),
    ({"mean": (0.5,) * 3, "std": (0.5, 0.0, 0.5)}, "std must be > 0 in every channel"),
    ({"weights": "/w.pth", "weights_mapping": "fuzzy"}, "weights_mapping must be one of by-name, "
                                                        "in-order"),
])
def test_bad_normalisation_or_mapping_names_the_value(labeler: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_label_config(source="imgs", store="st", labeler=labeler)


def test_label_cli_refuses_a_wrong_normalisation_for_packaged_weights(tmp_path: Path) -> None:
    from autosod.cli import app

    res = CliRunner().invoke(app, ["label", str(tmp_path), "--store", str(tmp_path / "s"),
                                   "--backbone", "efficientnet_lite2", "--mean",
                                   "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"])
    assert res.exit_code == 2 and "were trained with mean=(0.5, 0.5, 0.5)" in res.output, (
        res.output)
    assert not (tmp_path / "s").exists(), "a refused setting must fail before the store exists"


def test_config_modules_stay_torch_free() -> None:
    code = ("import sys, autosod.models.config, autosod.labeling.config; "
            "print(sorted({'torch', 'ray'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_store_config_differences_name_the_changed_settings() -> None:
    old = store_config(build_label_config(source="imgs", store="st", labeler=LITE0_368))
    new = store_config(build_label_config(
        source="imgs", store="st", labeler={"model_name": "efficientnet_lite1", "input_size": 320,
                                            "mean": (0.5,) * 3, "std": (0.5,) * 3}))
    path = store_config(build_label_config(
        source="imgs", store="st", labeler={**LITE0_368, "weights": "/w.pth",
                                            "mean": (0.4, 0.5, 0.5),
                                            "std": (0.5,) * 3, "stages": (1, 2)}))
    assert config_differences(old, old) == []
    changed = config_differences(old, new)
    assert len(changed) == 3, changed  # mean/std equal to the package's: unset, not changed
    assert "labeler.input_size: 368 -> 320" in changed
    assert "labeler.weights: 'package:efficientnet-lite0' -> 'package:efficientnet-lite1'" in (
        changed)
    assert "labeler.mean: '<unset>' -> [0.4, 0.5, 0.5]" in config_differences(old, path)
    assert "labeler.stages: [0, 1, 2, 3, 4] -> [1, 2]" in config_differences(old, path)
