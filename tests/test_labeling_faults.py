"""Fault tests of the labelling job on a real Ray cluster: the driver is SIGKILLed part-way and
rerun; a POTNet actor process is SIGKILLed mid-run; an image kills every actor that labels it.
Every image ends up in the store once."""

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
from autosod.labeling.actor import EXIT_ENV, MAX_ACTOR_KILLS, PID_DIR_ENV

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


def _label_actors(cluster: RayCluster) -> list[dict]:
    """The POTNet actors (Ray Data's map workers around LabelStage) the cluster knows of."""
    return [actor for actor in cluster.list_actors() if "LabelStage" in actor["class_name"]]


def test_actor_killed_mid_run(ray_cluster: RayCluster, tmp_path: Path) -> None:  # noqa: F811
    """Ray restarts the killed actor (Ray Data's actor pool: max_restarts=-1) and retries its
    batches, so the one job completes with every image committed exactly once."""
    images = write_image_folder(tmp_path / "images", ACTOR_IMAGES, seed=4)
    store = tmp_path / "store"
    entry = ["python", "jobs/label.py", str(tmp_path / "images"), "--store", str(store),
             *JOB_ARGS, "--input-size", "192"]
    earlier = {actor["actor_id"] for actor in _label_actors(ray_cluster)}  # other tests' jobs
    job = subprocess.Popen(ray_cluster.submit_command(entry), cwd=REPO_ROOT,
                           env=ray_cluster.client_env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    alive: list[dict] = []

    def an_actor_is_alive() -> bool:
        alive[:] = [actor for actor in _label_actors(ray_cluster)
                    if actor["actor_id"] not in earlier and actor["state"] == "ALIVE"
                    and actor["pid"]]
        return bool(alive)

    _wait_for(an_actor_is_alive, 300, "a live POTNet actor", job)
    time.sleep(1.0)  # let the actor take its first batches
    committed_at_kill = len(MaskStore.open(str(store)).committed_ids())
    victim = alive[0]
    os.kill(victim["pid"], signal.SIGKILL)  # the POTNet actor process of our own test cluster
    assert committed_at_kill < ACTOR_IMAGES, "the job had finished before the kill"
    out, _ = job.communicate(timeout=600)
    assert job.returncode == 0, f"the job did not survive its actor's death:\n{out[-3000:]}"
    after = next(actor for actor in _label_actors(ray_cluster)
                 if actor["actor_id"] == victim["actor_id"])
    assert after["num_restarts"] >= 1, f"the killed actor was not restarted: {after}"
    _assert_exactly_once(store, images)


def test_an_image_that_kills_its_actor_is_marked_after_bounded_retries(
    ray_cluster: RayCluster, tmp_path: Path  # noqa: F811
) -> None:
    """Issue 16: the actor process exits (as in a crash) whenever it labels one image. Ray Data
    restarts it and retries the batch; the retry labels one image at a time, and after the image
    killed its actor MAX_ACTOR_KILLS times alone it is marked model_error: the run ends, every
    other image is labelled, and the actor died exactly 1 + MAX_ACTOR_KILLS times."""
    images = write_image_folder(tmp_path / "images", 24, seed=7)
    killer = images[5]
    store, pid_dir = tmp_path / "store", tmp_path / "pids"
    entry = ["python", "jobs/label.py", str(tmp_path / "images"), "--store", str(store),
             "--input-size", "128", "--batch-size", "8", "--no-progress"]
    env_json = json.dumps({"env_vars": {EXIT_ENV: killer.name, PID_DIR_ENV: str(pid_dir)}})
    _run(ray_cluster, entry, runtime_env_json=env_json)
    opened = MaskStore.open(str(store))
    rows = {r["uri"]: r for r in opened.read(["uri", "status", "error"]).to_pylist()}
    killed = rows[f"file://{killer}"]
    assert killed["status"] == "model_error", killed
    assert f"killed the POTNet actor {MAX_ACTOR_KILLS} times" in killed["error"], killed
    others = [r["status"] for uri, r in rows.items() if uri != f"file://{killer}"]
    assert others == ["ok"] * (len(images) - 1), others
    _assert_exactly_once(store, images)
    actors = opened.latest_summary()["ray"]["num_actors"]
    deaths = len(list(pid_dir.iterdir())) - actors
    assert deaths == 1 + MAX_ACTOR_KILLS, f"{deaths} actor deaths (pid files {actors} + deaths)"
