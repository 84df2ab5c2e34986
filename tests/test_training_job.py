"""The training job end to end on a real Ray cluster (`ray start --head`), on a store labelled
from real horse images: the CLI, resume after a finished run, a driver SIGKILLed mid-run and
rerun (local run directory and s3:// on moto), and two gloo workers against one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from ray_cluster import REPO_ROOT, RayCluster, ray_cluster  # noqa: F401 - session fixture
from training_stores import copy_benchmark, label_folder

from autosod.io.filesystem import open_filesystem
from autosod.training.runs import (
    HISTORY_FILE,
    SUMMARY_FILE,
    best_checkpoint,
    latest_checkpoint,
    load_run_network,
    read_run_json,
)

pytestmark = pytest.mark.slow

AUTOSOD = Path(sys.executable).parent / "autosod"  # the installed console script
IMAGES = 24
TINY = ["--input-size", "96", "--batch-size", "4", "--val-fraction", "0.25", "--no-progress"]


def _output(result: subprocess.CompletedProcess) -> str:
    return (f"rc={result.returncode}\nSTDOUT:\n{result.stdout[-5000:]}\n"
            f"STDERR:\n{result.stderr[-4000:]}")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A store of 24 labelled horse images, one of which is then moved away; 6 GrabCut pairs."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real development data not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("train-job")
    images = copy_benchmark(SHARED_DATA / "weizmann-horse", root / "horses", IMAGES)
    label_folder(images, root / "store")
    images[5].rename(root / "moved-away.jpg")
    copy_benchmark(SHARED_DATA / "grabcut", root / "gt", 6)
    return {"root": root, "store": str(root / "store"), "gt": str(root / "gt")}


def _train(cluster: RayCluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(AUTOSOD), "train", *args, *TINY, "--address",
                           cluster.gcs_address], env=cluster.client_env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def cli_run(ray_cluster: RayCluster, data: dict) -> dict:  # noqa: F811
    """`autosod train` for 2 epochs, then the same command with --epochs 3 (resumes)."""
    run = str(data["root"] / "runs" / "cli")
    args = [data["store"], "--run", run, "--val-gt", data["gt"]]
    first = _train(ray_cluster, *args, "--epochs", "2")
    assert first.returncode == 0, _output(first)
    first_summary = read_run_json(run, SUMMARY_FILE)
    second = _train(ray_cluster, *args, "--epochs", "3")
    assert second.returncode == 0, _output(second)
    return {"run": run, "first": first, "first_summary": first_summary, "second": second,
            "summary": read_run_json(run, SUMMARY_FILE)}


class TestCommandLine:
    def test_summary_printed_with_ground_truth_figures(self, cli_run: dict) -> None:
        out = cli_run["first"].stdout
        assert "training run:" in out and "best checkpoint" in out, _output(cli_run["first"])
        assert "epoch 2/2:" in out and "gt iou" in out, _output(cli_run["first"])

    def test_unreadable_image_is_counted_and_skipped(self, cli_run: dict) -> None:
        counts = cli_run["summary"]["data"]["counts"]
        assert counts == {"ok": IMAGES - 1, "read_error": 1}, counts
        data = cli_run["summary"]["data"]
        assert data["train"] + data["val"] == IMAGES - 1, data
        assert "horse006" in data["error_samples"]["read_error"][0], data["error_samples"]

    def test_rerun_continues_the_epoch_count(self, cli_run: dict) -> None:
        first, summary = cli_run["first_summary"], cli_run["summary"]
        assert first["epochs_done"] == 2 and first["resumed_after_epoch"] == 0
        assert summary["resumed_after_epoch"] == 2 and summary["epochs_done"] == 3
        assert summary["epochs_run"] == 1
        history = summary["history"]
        assert [r["epoch"] for r in history] == [1, 2, 3]
        assert history[:2] == first["history"], "the rerun rewrote the earlier epochs"
        assert "resuming run" in cli_run["second"].stdout + cli_run["second"].stderr

    def test_ground_truth_reported_every_epoch(self, cli_run: dict) -> None:
        for record in cli_run["summary"]["history"]:
            gt = record["val_gt"]["gt"]
            assert gt["images"] == 6 and 0.0 <= gt["iou"] <= 1.0 and 0.0 < gt["max_f"] <= 1.0

    def test_checkpoints_load_with_weights_only(self, cli_run: dict) -> None:
        run = cli_run["run"]
        assert latest_checkpoint(run).endswith("epoch-0003/checkpoint.pt")
        kept = cli_run["summary"]["checkpoints"]
        assert 1 <= len(kept) <= 3 and kept[-1].endswith("epoch-0003/checkpoint.pt"), kept
        for uri in kept:
            payload = torch.load(uri, map_location="cpu", weights_only=True)
            assert payload["epoch"] == int(Path(uri).parent.name.split("-")[1])
        steps = cli_run["summary"]["history"][0]["steps"]
        assert payload["step"] == 3 * steps
        best = best_checkpoint(run)
        assert best == cli_run["summary"]["best"]["uri"] and best in kept
        net = load_run_network(run)
        preds = net.predict(np.zeros((1, 96, 96, 3), np.uint8), [(40, 60)])
        assert preds[0].shape == (40, 60)


# Fault: the driver SIGKILLed after its first checkpoint, then the same command again.

def _driver_pids(marker: str) -> list[int]:
    """Processes of this test's job driver (`jobs/train.py` with this run's unique path)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "jobs/train.py" in cmdline and marker in cmdline and "ray job" not in cmdline:
            pids.append(int(proc.name))
    return pids


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _killed_and_rerun(cluster: RayCluster, data: dict, run: str, options: dict | None,
                      env: dict[str, str] | None) -> dict:
    entry = ["python", "jobs/train.py", data["store"], "--run", run, "--epochs", "4", *TINY]
    if options:
        entry += ["--endpoint-url", options["client_kwargs"]["endpoint_url"]]
    runtime_env = json.dumps({"env_vars": env}) if env else None
    submit = cluster.submit_command(entry, runtime_env_json=runtime_env)
    submit.insert(submit.index("submit") + 1, "--no-wait")
    subprocess.run(submit, env=cluster.client_env, cwd=REPO_ROOT, check=True,
                   capture_output=True, timeout=120)

    def epochs_done() -> int:
        return len(read_run_json(run, HISTORY_FILE, options) or [])

    _wait(lambda: epochs_done() >= 1, 600, "the first epoch's checkpoint")
    pids = _driver_pids(run)
    assert pids, "the job's driver process was not found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    killed_after = epochs_done()
    _wait(lambda: not _driver_pids(run), 60, "the killed driver to go")
    rerun = cluster.submit(entry, runtime_env_json=runtime_env, timeout_s=900)
    assert rerun.returncode == 0, _output(rerun)
    return {"killed_after": killed_after, "rerun": rerun,
            "summary": read_run_json(run, SUMMARY_FILE, options)}


def _assert_continued(result: dict) -> None:
    summary, killed_after = result["summary"], result["killed_after"]
    assert summary is not None, _output(result["rerun"])
    assert 1 <= killed_after < 4, f"the kill landed after epoch {killed_after}"
    assert summary["resumed_after_epoch"] >= killed_after, summary["resumed_after_epoch"]
    assert summary["epochs_run"] == 4 - summary["resumed_after_epoch"]
    assert [r["epoch"] for r in summary["history"]] == [1, 2, 3, 4]


def test_killed_driver_resumes_from_its_last_checkpoint_local(
        ray_cluster: RayCluster, data: dict) -> None:  # noqa: F811
    result = _killed_and_rerun(ray_cluster, data, str(data["root"] / "runs" / "fault"), None,
                               None)
    _assert_continued(result)


def test_killed_driver_resumes_from_its_last_checkpoint_s3(
        ray_cluster: RayCluster, data: dict, s3: dict) -> None:  # noqa: F811
    fs, _ = open_filesystem("s3://autosod-train-fault/x", s3)
    fs.mkdir("autosod-train-fault")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": s3["client_kwargs"]["endpoint_url"]}
    run = "s3://autosod-train-fault/runs/fault"
    result = _killed_and_rerun(ray_cluster, data, run, s3, env)
    _assert_continued(result)
    kept = result["summary"]["checkpoints"]
    assert kept and all(u.startswith(run + "/epoch-") for u in kept), kept
    assert best_checkpoint(run, s3).startswith(run + "/epoch-")


# Two gloo workers against one: same global batch and seed, same samples and augmentations
# (autosod.training.sampling), so the same losses up to float summation order.
LOSS_RTOL = 2e-3


def test_two_workers_follow_the_loss_trajectory_of_one(ray_cluster: RayCluster,  # noqa: F811
                                                        data: dict) -> None:
    summaries = {}
    for workers in (1, 2):
        run = str(data["root"] / "runs" / f"workers-{workers}")
        result = _train(ray_cluster, data["store"], "--run", run, "--epochs", "2",
                        "--workers", str(workers))
        assert result.returncode == 0, _output(result)
        summaries[workers] = read_run_json(run, SUMMARY_FILE)
    one, two = ([s for r in summaries[w]["history"] for s in r["step_loss"]] for w in (1, 2))
    assert len(one) == len(two) >= 8
    np.testing.assert_allclose(two, one, rtol=LOSS_RTOL)
    assert abs(one[-1] - one[0]) > 10 * LOSS_RTOL * one[0], "the loss never moved: no test"
    val_one, val_two = (summaries[w]["history"][-1]["val"] for w in (1, 2))
    assert val_one["images"] == val_two["images"]
    np.testing.assert_allclose(val_two["loss"], val_one["loss"], rtol=LOSS_RTOL)
