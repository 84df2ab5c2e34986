"""The prediction job on a real Ray cluster (`ray start --head`): `ray job submit -- python
jobs/predict.py` writes a store that `autosod evaluate`, `autosod export` and `autosod train`
read, a rerun adds no rows, and a driver SIGKILLed part-way then rerun leaves every image in the
store exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from prediction_fixtures import copy_images, make_run
from ray_cluster import REPO_ROOT, RayCluster, ray_cluster  # noqa: F401 - session fixture
from test_labeling_faults import _assert_exactly_once, _commits, _wait_for

from autosod.benchmarks.image_folder import write_image_folder
from autosod.io.store.mask_store import MaskStore

pytestmark = pytest.mark.slow

AUTOSOD = Path(sys.executable).parent / "autosod"
HORSES = 12
KILL_IMAGES = 160
JOB_ARGS = ["--batch-size", "4", "--no-progress"]


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _autosod(cluster: RayCluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(AUTOSOD), *args], env=cluster.client_env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="class")
def predicted(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: F811
    """Predict twelve horse images with a tiny run, then rerun the same command."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real development data not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("predict-job")
    copy_images(SHARED_DATA / "weizmann-horse", root / "horse", HORSES)
    make_run(root / "run")
    store = root / "store"
    entry = ["python", "jobs/predict.py", str(root / "run"), str(root / "horse" / "images"),
             "--store", str(store), *JOB_ARGS]
    first = _ok(ray_cluster.submit(entry))
    first_summary = MaskStore.open(str(store)).latest_summary()
    _ok(ray_cluster.submit(entry))
    return {"root": root, "store": store, "first": first, "summary": first_summary,
            "rerun_summary": MaskStore.open(str(store)).latest_summary()}


class TestPredictJob:
    def test_every_image_once_with_scores(self, predicted: dict) -> None:
        table = MaskStore.open(str(predicted["store"])).read()
        assert table.num_rows == HORSES and set(table["status"].to_pylist()) == {"ok"}
        assert len(set(table["image_id"].to_pylist())) == HORSES
        assert table["objectness"].null_count == 0 and table["mask_quality"].null_count == 0
        assert "prediction run" in predicted["first"] and "checkpoint" in predicted["first"]

    def test_the_store_records_its_checkpoint(self, predicted: dict) -> None:
        config = MaskStore.open(str(predicted["store"])).config["prediction"]
        checkpoint = predicted["root"] / "run" / "epoch-0001" / "checkpoint.pt"
        assert config["checkpoint"] == str(checkpoint)
        assert len(config["checkpoint_sha256"]) == 64 and config["size_px"] == 64

    def test_a_rerun_adds_no_rows(self, predicted: dict) -> None:
        rerun = predicted["rerun_summary"]
        assert (rerun["processed"], rerun["skipped_committed"]) == (0, HORSES), rerun["counts"]
        assert rerun["store_rows"] == HORSES

    def test_evaluate_and_export_read_it(self, predicted: dict,
                                         ray_cluster: RayCluster) -> None:  # noqa: F811
        root = predicted["root"]
        _ok(_autosod(ray_cluster, "evaluate", "--pred", str(predicted["store"]), "--gt",
                     str(root / "horse"), "--json", str(root / "metrics.json")))
        metrics = json.loads((root / "metrics.json").read_text())
        assert metrics["count"] == HORSES and 0 <= metrics["iou"] <= 1
        _ok(_autosod(ray_cluster, "export", str(predicted["store"]), "--out",
                     str(root / "export")))
        assert len(list((root / "export").glob("*.png"))) == HORSES

    def test_train_reads_it(self, predicted: dict, ray_cluster: RayCluster) -> None:  # noqa: F811
        run = predicted["root"] / "round2"
        _ok(_autosod(ray_cluster, "train", str(predicted["store"]), "--run", str(run),
                     "--epochs", "1", "--batch-size", "4", "--input-size", "64",
                     "--val-fraction", "0.3", "--address", ray_cluster.gcs_address))
        summary = json.loads((run / "summary.json").read_text())
        assert summary["history"][-1]["epoch"] == 1
        assert (run / "best.json").exists()


def test_driver_killed_part_way_then_rerun(ray_cluster: RayCluster, tmp_path: Path) -> None:  # noqa: F811
    images = write_image_folder(tmp_path / "images", KILL_IMAGES, seed=5)
    make_run(tmp_path / "run")
    store = tmp_path / "store"
    args = [str(tmp_path / "run"), str(tmp_path / "images"), "--store", str(store),
            "--part-rows", "8", "--size", "320", *JOB_ARGS]  # slow enough to kill part-way
    driver = subprocess.Popen(  # a driver attached to the cluster, killed like a lost node
        [sys.executable, "jobs/predict.py", *args, "--address", ray_cluster.gcs_address],
        cwd=REPO_ROOT, env=ray_cluster.client_env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: _commits(store) >= 1, 300, "a commit", driver)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    committed_at_kill = len(MaskStore.open(str(store)).committed_ids())
    assert 0 < committed_at_kill < KILL_IMAGES, f"kill was not part-way: {committed_at_kill}"
    _ok(ray_cluster.submit(["python", "jobs/predict.py", *args]))
    summary = MaskStore.open(str(store)).latest_summary()
    assert summary["skipped_committed"] >= committed_at_kill
    assert summary["skipped_committed"] + summary["processed"] == KILL_IMAGES, summary["counts"]
    _assert_exactly_once(store, images)
    assert os.path.exists(store / "store.json")
