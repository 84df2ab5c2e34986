"""The labelling job on a real Ray cluster under storage faults (local disk, and a moto S3 server
behind a proxy that fails chosen requests for real), each driver a fresh `jobs/label.py` process:

(a) a commit record unreadable (or truncated) during a run stops that run with one clear line and
    deletes nothing; once it is readable again, the next run, `status`, `export`, `evaluate` and
    the Ray evaluation job see every image exactly once;
(b) commit-record reads that fail a few times, then succeed: the run completes, each image once;
(c) images that fail with read_error are labelled by the next run, unless --no-retry-failed, and
    permanent failures are never retried;
(4) 2,000 small images on S3 with 1,000-row parts make a handful of data files, and after a
    driver SIGKILL the rerun leaves every image in the store exactly once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fault_proxy import FaultProxy
from PIL import Image
from ray_cluster import REPO_ROOT, RayCluster, _stop, start_ray_cluster
from test_io_store_faults import Place

from autosod.benchmarks.image_folder import CORRUPT_FILES, write_image_folder
from autosod.evaluation.store_source import evaluate_store
from autosod.io import MaskStore, open_filesystem
from autosod.io.store.commit_log import is_record_name
from autosod.store_tools.export import export_store
from autosod.store_tools.status import store_status

pytestmark = pytest.mark.slow

GOOD = 36
ARGS = ["--input-size", "64", "--batch-size", "6", "--part-rows", "6", "--no-progress"]
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    """A test cluster whose workers have the moto credentials in their environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS.items():
            patch.setenv(name, value)
        cluster, proc = start_ray_cluster()
    try:
        yield cluster
    finally:
        _stop(proc, cluster.temp_dir)


def _driver(cluster: RayCluster, source: str, store: str, *extra: str,
            endpoint: str | None = None, base: tuple[str, ...] = tuple(ARGS)) -> list[str]:
    command = [sys.executable, "jobs/label.py", source, "--store", store, "--address",
               cluster.gcs_address, *base, *extra]
    return command + (["--endpoint-url", endpoint] if endpoint else [])


def _label(cluster: RayCluster, source: str, store: str, *extra: str,
           endpoint: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**cluster.client_env, **AWS}
    done = subprocess.run(_driver(cluster, source, store, *extra, endpoint=endpoint), env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False)
    if ok:
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _bench(images: list[Path], root: Path) -> Path:
    """A benchmark folder with a (square, centred) GT mask for each good image."""
    masks = root / "bench" / "masks"
    masks.mkdir(parents=True)
    for path in images:
        with Image.open(path) as image:
            width, height = image.size
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
        Image.fromarray(mask).save(masks / f"{path.stem}.png")
    return root / "bench"


class Source:
    """Generated images, on disk or uploaded to a bucket, and the store next to them."""

    def __init__(self, root: Path, proxy: FaultProxy | None, count: int = GOOD) -> None:
        self.good = write_image_folder(root / "images", count, seed=11, corrupt=True)
        self.proxy = proxy
        if proxy is None:
            self.uri, self.store, self.options = str(root / "images"), str(root / "store"), None
            self.endpoint = None
        else:
            self.options = {"client_kwargs": {"endpoint_url": proxy.url}}
            fs = open_filesystem("s3://labelfaults", self.options)[0]
            fs.mkdir("labelfaults")
            fs.put(str(root / "images") + "/", "labelfaults/src/", recursive=True)
            self.uri, self.store = "s3://labelfaults/src", "s3://labelfaults/store"
            self.endpoint = proxy.url
        self.place = Place(self.store, self.options, proxy)

    def opened(self) -> MaskStore:
        return MaskStore.open(self.store, storage_options=self.options)

    def expected_ids(self) -> set[str]:
        from autosod.io.manifest import image_id_for

        names = [p.name for p in self.good] + list(CORRUPT_FILES)
        base = self.uri if self.proxy else os.path.abspath(self.uri)
        return {image_id_for(f"{base}/{name}") for name in names}


@pytest.fixture(params=["local", "s3"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    if request.param == "local":
        yield Source(tmp_path, None)
        return
    proxy = FaultProxy(request.getfixturevalue("s3")["client_kwargs"]["endpoint_url"])
    try:
        yield Source(tmp_path, proxy)
    finally:
        proxy.close()


def _exactly_once(src: Source) -> None:
    ids = src.opened().read(["image_id"])["image_id"].to_pylist()
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert set(ids) == src.expected_ids()


def test_unreadable_or_damaged_record_stops_the_run_and_costs_nothing(
    cluster: RayCluster, source: Source, tmp_path: Path
) -> None:
    src, everything = source, GOOD + len(CORRUPT_FILES)
    _label(cluster, src.uri, src.store, "--limit", "24", endpoint=src.endpoint)
    record = f"commits/{src.opened().commits()[1].name}"
    files = src.place.data_files()
    src.place.break_file(record)
    failed = _label(cluster, src.uri, src.store, endpoint=src.endpoint, ok=False)
    assert failed.returncode == 2, failed.stdout[-2000:] + failed.stderr[-2000:]
    lines = [line for line in failed.stderr.splitlines() if "autosod label: error" in line]
    assert len(lines) == 1 and record.split("/")[1] in lines[0] and "cannot be read" in lines[0]
    assert src.place.data_files() == files, "a run that could not read its log deleted data"

    src.place.restore()
    _label(cluster, src.uri, src.store, endpoint=src.endpoint)
    summary = src.opened().latest_summary()
    assert summary["processed"] == everything - 24 and summary["skipped_committed"] == 24
    _exactly_once(src)
    whole = src.place.fs.cat_file(src.place.path(record))
    src.place.fs.pipe_file(src.place.path(record), whole[:-20])  # damaged: does not parse
    damaged = _label(cluster, src.uri, src.store, endpoint=src.endpoint, ok=False)
    assert damaged.returncode == 2 and "cannot be parsed" in damaged.stderr, damaged.stderr
    src.place.fs.pipe_file(src.place.path(record), whole)

    status = store_status(src.store, storage_options=src.options)
    assert status["committed"] == everything and status["remaining"] == 0
    assert status["done"] == GOOD and sum(status["failed"].values()) == len(CORRUPT_FILES)
    exported = export_store(src.store, str(tmp_path / "out"), storage_options=src.options)
    assert exported.written == GOOD == len(list((tmp_path / "out").glob("*.png")))
    bench = _bench(src.good, tmp_path)
    local = evaluate_store(src.store, str(bench), storage_options=src.options)
    assert local.metrics["count"] == GOOD and not local.pairing["missing_examples"]
    report = tmp_path / "metrics.json"
    command = [sys.executable, "jobs/evaluate.py", "--pred", src.store, "--gt", str(bench),
               "--json", str(report), "--address", cluster.gcs_address]
    command += ["--endpoint-url", src.endpoint] if src.endpoint else []
    done = subprocess.run(command, env={**cluster.client_env, **AWS}, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(report.read_text())["count"] == GOOD


def test_s3_commit_reads_failing_a_few_times_then_succeeding(
    cluster: RayCluster, s3: dict, tmp_path: Path
) -> None:
    with_proxy = FaultProxy(s3["client_kwargs"]["endpoint_url"])
    try:
        src = Source(tmp_path, with_proxy)
        _label(cluster, src.uri, src.store, "--limit", "24", endpoint=src.endpoint)
        records = [p.name for p in src.opened().commits()]
        rules = [with_proxy.fail("GET", f"/commits/{re.escape(name)}$", times=3)
                 for name in records[:2]]
        _label(cluster, src.uri, src.store, endpoint=src.endpoint)
        assert [rule.hits for rule in rules] == [3, 3], "the faults never happened"
        summary = src.opened().latest_summary()
        assert summary["processed"] == GOOD + len(CORRUPT_FILES) - 24
        _exactly_once(src)
    finally:
        with_proxy.close()


def test_read_errors_are_retried_by_the_next_run_and_permanent_failures_never(
    cluster: RayCluster, source: Source, tmp_path: Path
) -> None:
    src = source
    flaky = src.good[:5]
    if src.proxy is not None:  # the object store refuses these GETs for the first run
        for path in flaky:
            src.proxy.fail("GET", f"/labelfaults/src/{re.escape(path.name)}$")
        uri = src.uri
    else:  # a list of URIs whose files are missing for the first run
        uri = str(tmp_path / "uris.txt")
        Path(uri).write_text("\n".join(str(p) for p in sorted(Path(src.uri).iterdir())) + "\n")
        for path in flaky:
            path.rename(path.with_suffix(".away"))
    _label(cluster, uri, src.store, endpoint=src.endpoint)
    counts = src.opened().status_counts()
    assert counts["read_error"] == 5 and counts["ok"] == GOOD - 5, counts
    if src.proxy is not None:
        src.proxy.clear()
    else:
        for path in flaky:
            path.with_suffix(".away").rename(path)

    _label(cluster, uri, src.store, "--no-retry-failed", endpoint=src.endpoint)
    assert src.opened().latest_summary()["processed"] == 0
    _label(cluster, uri, src.store, endpoint=src.endpoint)
    summary = src.opened().latest_summary()
    assert summary["processed"] == 5, summary["counts"]  # not the 4 permanent failures
    counts = src.opened().status_counts()
    assert counts["ok"] == GOOD and "read_error" not in counts, counts
    assert sum(counts.values()) == GOOD + len(CORRUPT_FILES)
    rows = src.opened().read(["image_id", "status"]).to_pylist()
    assert len({r["image_id"] for r in rows}) == len(rows) == GOOD + len(CORRUPT_FILES)


def test_2000_images_on_s3_in_few_parts_survive_a_driver_kill(
    cluster: RayCluster, s3: dict, tmp_path: Path
) -> None:
    options = {"client_kwargs": {"endpoint_url": s3["client_kwargs"]["endpoint_url"]}}
    fs = open_filesystem("s3://scale", options)[0]
    fs.mkdir("scale")
    images = write_image_folder(tmp_path / "images", 2000, seed=12, min_size_px=24,
                                max_size_px=40)
    fs.put(str(tmp_path / "images") + "/", "scale/src/", recursive=True)
    endpoint = options["client_kwargs"]["endpoint_url"]
    args = ["s3://scale/src", "s3://scale/store"]
    base = ("--input-size", "64", "--part-rows", "1000", "--batch-size", "50", "--no-progress")
    driver = subprocess.Popen(_driver(cluster, *args, endpoint=endpoint, base=base),
                              env={**cluster.client_env, **AWS},
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.monotonic() + 600
        while not _records(fs):
            assert driver.poll() is None, driver.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no part was committed in 10 minutes"
            time.sleep(0.5)
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    store = MaskStore.open("s3://scale/store", storage_options=options)
    at_kill = store.commit_log().num_ids
    assert 0 < at_kill < 2000, f"the kill was not part-way: {at_kill} committed"
    done = subprocess.run(_driver(cluster, *args, endpoint=endpoint, base=base),
                          env={**cluster.client_env, **AWS}, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ids = store.read(["image_id"])["image_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 2000 == len(images)
    data = [p for p in fs.find("scale/store/data") if p.endswith(".parquet")]
    assert len(data) <= 5, f"{len(data)} data files for 2,000 rows in 1,000-row parts"
    assert store.latest_summary()["skipped_committed"] >= at_kill


def _records(fs) -> list[str]:
    """The commit records listed now (not the temp keys they are uploaded to first)."""
    fs.invalidate_cache("scale/store/commits")
    try:
        return [p for p in fs.ls("scale/store/commits", detail=False)
                if is_record_name(p.rsplit("/", 1)[-1])]
    except FileNotFoundError:
        return []
