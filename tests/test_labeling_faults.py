"""Fault tests of the labelling job on a real Ray cluster: the driver is SIGKILLed part-way and
rerun; a POTNet actor process is SIGKILLed mid-run. Every image ends up in the store once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ray_cluster import REPO_ROOT, RayCluster, ray_cluster  # noqa: F401 - session fixture

from autosod.benchmarks.image_folder import write_image_folder
from autosod.io.manifest import image_id_for
from autosod.io.store.mask_store import MaskStore
from autosod.labeling.stages import PID_DIR_ENV

pytestmark = pytest.mark.slow

IMAGES = 160
ACTOR_IMAGES = 240
# small parts: the writer commits every 16 rows, so a kill lands between commits
JOB_ARGS = ["--input-size", "128", "--batch-size", "8", "--part-rows", "16", "--no-progress"]


def _commits(store: Path) -> int:
    return len(list((store / "commits").glob("*.json"))) if (store / "commits").is_dir() else 0


def _wait_for(condition, timeout_s: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}: "
                                 f"{out[-3000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not happen within {timeout_s} s")


def _assert_exactly_once(store: Path, images: list[Path]) -> None:
    opened = MaskStore.open(str(store))
    ids = opened.read(["image_id"])["image_id"].to_pylist()
    expected = {image_id_for(str(p)) for p in images}
    assert len(ids) == len(set(ids)), "an image id appears twice among the committed rows"
    assert set(ids) == expected, f"{len(expected - set(ids))} images missing from the store"
    committed_rows = sum(commit.rows for commit in opened.commits())
    assert committed_rows == len(expected), (
        f"commit records hold {committed_rows} rows for {len(expected)} images: some image "
        "was committed twice")


def _run(cluster: RayCluster, entry: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = cluster.submit(entry, **kwargs)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-2000:]}"
    return result


def test_driver_killed_part_way_then_rerun(ray_cluster: RayCluster, tmp_path: Path) -> None:  # noqa: F811
    images = write_image_folder(tmp_path / "images", IMAGES, seed=3)
    store = tmp_path / "store"
    args = [str(tmp_path / "images"), "--store", str(store), *JOB_ARGS]
    driver = subprocess.Popen(  # a driver attached to the cluster, killed like a lost node
        [str(Path(os.sys.executable)), "jobs/label.py", *args, "--address",
         ray_cluster.gcs_address], cwd=REPO_ROOT, env=ray_cluster.client_env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: _commits(store) >= 2, 300, "two commits", driver)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    committed_at_kill = len(MaskStore.open(str(store)).committed_ids())
    assert 0 < committed_at_kill < IMAGES, f"kill was not part-way: {committed_at_kill} done"
    _run(ray_cluster, ["python", "jobs/label.py", *args])
    summary = MaskStore.open(str(store)).latest_summary()
    assert summary["skipped_committed"] >= committed_at_kill
    assert summary["skipped_committed"] + summary["processed"] == IMAGES, summary["counts"]
    _assert_exactly_once(store, images)


def test_actor_killed_mid_run(ray_cluster: RayCluster, tmp_path: Path) -> None:  # noqa: F811
    images = write_image_folder(tmp_path / "images", ACTOR_IMAGES, seed=4)
    store, pid_dir = tmp_path / "store", tmp_path / "pids"
    entry = ["python", "jobs/label.py", str(tmp_path / "images"), "--store", str(store),
             *JOB_ARGS, "--input-size", "192"]
    env_json = json.dumps({"env_vars": {PID_DIR_ENV: str(pid_dir)}})
    job = subprocess.Popen(ray_cluster.submit_command(entry, runtime_env_json=env_json),
                           cwd=REPO_ROOT, env=ray_cluster.client_env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: pid_dir.is_dir() and any(pid_dir.iterdir()), 300, "an actor pid file",
              job)
    time.sleep(1.0)  # let the actor take its first batches
    committed_at_kill = len(MaskStore.open(str(store)).committed_ids())
    first_pid = int(next(pid_dir.iterdir()).stem)
    os.kill(first_pid, signal.SIGKILL)  # the POTNet actor process of our own test cluster
    assert committed_at_kill < ACTOR_IMAGES, "the job had finished before the kill"
    out, _ = job.communicate(timeout=600)
    if job.returncode == 0:
        pids = {int(p.stem) for p in pid_dir.iterdir()}
        assert len(pids) >= 2, f"job succeeded but no actor was restarted: {pids}\n{out[-2000:]}"
    else:  # the job gave up: the rerun must complete it
        _run(ray_cluster, entry)
    _assert_exactly_once(store, images)
