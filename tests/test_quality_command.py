"""`autosod quality` end to end on a small benchmark folder made here (real backbone and head)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from autosod.benchmarks.quality import TABLE_METRICS
from autosod.benchmarks.quality_features import (
    extract_feature_set,
    load_feature_set,
    save_feature_set,
)
from autosod.benchmarks.quality_variants import VARIANTS
from autosod.cli import app
from tests.synthetic_scenes import make_scene

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """images/ + masks/ of 4 synthetic scenes (224 px, masks 255 = object)."""
    root = tmp_path_factory.mktemp("bench")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for seed in range(4):
        scene = make_scene(seed)
        rgb = np.clip(np.asarray(scene.image) * (255 if scene.image.max() <= 1 else 1), 0, 255)
        Image.fromarray(rgb.astype(np.uint8)).save(root / "images" / f"s{seed}.jpg", quality=95)
        mask = np.kron(scene.mask.reshape(scene.grid), np.ones((8, 8))).astype(np.uint8) * 255
        Image.fromarray(mask).save(root / "masks" / f"s{seed}.png")
    return root


@pytest.fixture(scope="class")
def run(benchmark: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("out")
    result = CliRunner().invoke(app, [
        "quality", "--data", str(benchmark), "--json", str(out / "q.json"), "--limit", "3",
        "--figure-images", "2", "--device", "cpu", "--input-size", "128",
    ])
    return {"result": result, "out": out}


class TestQualityCommand:
    def test_exit_code_and_markdown(self, run: dict) -> None:
        result = run["result"]
        assert result.exit_code == 0, result.output
        for name in VARIANTS:
            assert "| bench" in result.output and f"| {name} |" in result.output, name

    def test_json_has_every_variant_and_metric(self, run: dict) -> None:
        data = json.loads((run["out"] / "q.json").read_text())
        table = next(iter(data["sets"].values()))
        assert sorted(table) == sorted(VARIANTS)
        for name, row in table.items():
            assert row["count"] == 3, name
            for key in (*TABLE_METRICS, "confident_iou", "other_iou"):
                assert 0.0 <= row[key] <= 1.0, (name, key, row[key])
        assert data["config"]["input_size"] == 128

    def test_overlay_figure(self, run: dict) -> None:
        with Image.open(run["out"] / "q_overlays.png") as figure:
            width, height = figure.size
        assert width > height > 100, "2 rows x 8 panels expected"


def test_feature_cache_round_trip(benchmark: Path, tmp_path: Path) -> None:
    from autosod.models.config import BackboneConfig

    features = extract_feature_set(str(benchmark), BackboneConfig(input_size=64), limit=2)
    loaded = load_feature_set(save_feature_set(features, tmp_path / "f.npz"))
    assert loaded.stems == features.stems and loaded.grid == features.grid == (4, 4)
    assert np.array_equal(loaded.sizes, features.sizes)
    assert np.allclose(loaded.feats, features.feats, atol=2e-3)
    assert np.array_equal(loaded.cams, features.cams)


def test_missing_folder_and_unknown_variant_fail(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["quality", "--data", str(tmp_path / "none"),
                                  "--json", str(tmp_path / "q.json")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    unknown = runner.invoke(app, ["quality", "--data", str(tmp_path), "--json",
                                  str(tmp_path / "q.json"), "--variant", "magic"])
    assert unknown.exit_code == 2 and "unknown variants" in unknown.output


def test_job_entry_point_shares_the_options() -> None:
    out = subprocess.run([sys.executable, "jobs/benchmark.py", "quality", "--help"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cli = CliRunner().invoke(app, ["quality", "--help"]).output
    for option in ("--data", "--json", "--variant", "--split-quantile", "--temperature",
                   "--top-classes", "--stages", "--eps"):
        assert option in out.stdout and option in cli, option
