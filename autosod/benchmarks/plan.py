"""The labelling driver at scale: `python jobs/benchmark.py plan --images N --committed M`.

A synthetic store (a manifest of N rows and a commit log of M committed ids, written directly as
commit records of `part_rows` ids, with empty part files; no labelling) is planned the way
`run_label_job` plans a run: open the store, read the commit log, reuse the manifest, clean up
(compacting the log), write the todo files and build the Ray dataset that feeds the actors. The
plan runs in a fresh subprocess, whose own peak resident memory (`ru_maxrss`) is reported; Ray
is started before the clock starts. A second subprocess plans again on the now compacted log.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from autosod.io.manifest import DEFAULT_SHARD_SIZE, MANIFEST_SCHEMA
from autosod.io.status import READ_ERROR
from autosod.io.store.commit_log import Commit, write_commit
from autosod.io.store.mask_store import MaskStore
from autosod.io.store.schema import SCHEMA_VERSION
from autosod.labeling.config import LabelJobConfig

__all__ = ["run_plan_benchmark", "write_synthetic_store"]

_CHUNK = 1 << 20
_RETRYABLE_SHARE = 0.002  # committed rows stored as read_error (the run retries them)


def _manifest_chunk(start: int, stop: int, shard_size: int) -> pa.Table:
    uris = [f"s3://bench-images/photos/{i:09d}.jpg" for i in range(start, stop)]
    ids = [hashlib.sha1(u.encode()).hexdigest()[:20] for u in uris]
    return pa.table({"image_id": pa.array(ids, pa.string()), "uri": pa.array(uris, pa.string()),
                     "size": pa.array(np.full(stop - start, 150_000, np.int64)),
                     "shard": pa.array((np.arange(start, stop) // shard_size).astype(np.int32))})


def write_synthetic_store(workdir: Path, *, images: int, committed: int, part_rows: int,
                          seed: int = 0) -> tuple[str, str]:
    """(source, store) of a synthetic store; the source string matches the saved manifest."""
    from autosod.labeling.job import store_config  # Ray: only when a benchmark runs

    if not 0 <= committed <= images:
        raise ValueError(f"need 0 <= committed <= images, got {committed} and {images}")
    source, store_uri = str(workdir / "images"), str(workdir / "store")
    config = LabelJobConfig(source=source, store=store_uri)
    store = MaskStore.open(store_uri, config=store_config(config), mode="overwrite")
    rng = np.random.default_rng(seed)
    chosen = np.zeros(images, dtype=bool)
    chosen[rng.choice(images, size=committed, replace=False)] = True
    schema = MANIFEST_SCHEMA.with_metadata({"autosod_source": source})
    pending: list[str] = []
    part = 0
    with pq.ParquetWriter(os.path.join(store_uri, "manifest.parquet"), schema) as writer:
        for start in range(0, images, _CHUNK):
            table = _manifest_chunk(start, min(images, start + _CHUNK), DEFAULT_SHARD_SIZE)
            writer.write_table(table.cast(schema))
            pending += table["image_id"].filter(pa.array(chosen[start:start + len(table)]))\
                .to_pylist()
            while len(pending) >= part_rows or (pending and start + _CHUNK >= images):
                ids, pending = pending[:part_rows], pending[part_rows:]
                _commit(store_uri, store.config_hash, part, ids, rng)
                part += 1
    return source, store_uri


def _commit(root: str, cfg: str, part: int, ids: list[str], rng: np.random.Generator) -> None:
    """One commit record of `ids` (a few as read_error) and an empty part file it names."""
    key = hashlib.sha256(str(part).encode()).hexdigest()[:16]
    data = f"data/shard-{part:06d}/part-{key}.parquet"
    failed = {i: READ_ERROR for i in ids if rng.random() < _RETRYABLE_SHARE}
    commit = Commit(shard=part, part_key=key, data=data, rows=len(ids), ids=tuple(sorted(ids)),
                    failed=failed, config_hash=cfg, committed_at_ns=1_000_000 + part,
                    schema_version=SCHEMA_VERSION)
    os.makedirs(os.path.dirname(os.path.join(root, data)), exist_ok=True)
    Path(root, data).touch()  # cleanup lists the part files; the plan never reads them
    write_commit(LocalFileSystem(), root, commit)


_CHILD = """
import json, resource, sys, time, tempfile
import ray
source, store_uri = sys.argv[1:3]
clock = time.perf_counter()
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
         _temp_dir=tempfile.mkdtemp(prefix="rplan", dir="/tmp"))
ray_init_s = time.perf_counter() - clock
from autosod.labeling.config import LabelJobConfig
from autosod.io.store.mask_store import MaskStore
from autosod.labeling.job import store_config, todo_dataset
from autosod.labeling.prepare import prepare_run
laps, start = {}, time.perf_counter()
last = [start]
def lap(name):
    now = time.perf_counter(); laps[name] = round(now - last[0], 2); last[0] = now
config = LabelJobConfig(source=source, store=store_uri, progress=False)
store = MaskStore.open(config.store, config=store_config(config, "fp32"))
prepared = prepare_run(config, store, preflight=False, lap=lap)
dataset = todo_dataset(prepared.todo, config, store) if prepared.todo.num_rows else None
lap("dataset")
plan_s = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
first = time.perf_counter()
rows = next(iter(dataset.iter_batches(batch_size=16))) if dataset is not None else None
print(json.dumps({"plan_s": round(plan_s, 2), "peak_rss_mb": round(peak_mb, 1),
                  "todo_rows": prepared.todo.num_rows, "laps_s": laps,
                  "ray_init_s": round(ray_init_s, 2),
                  "first_batch_s": round(time.perf_counter() - first, 2),
                  "log_files": len(prepared.log.record_files | prepared.log.compacted_files)}))
ray.shutdown()
"""


def _plan_in_subprocess(source: str, store: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _CHILD, source, store], capture_output=True,
                          text=True, check=False, env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    if done.returncode != 0:
        raise RuntimeError(f"the plan subprocess failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_plan_benchmark(*, images: int, committed: int, part_rows: int = 2000,
                       workdir: str | None = None) -> dict[str, Any]:
    """Figures of the driver's plan (see the module docstring); keys `images`, `committed`,
    `plan_s`, `peak_rss_mb`, `todo_rows`, and the same for a second plan (`compacted`)."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="plan-bench-") as tmp:
        clock = time.perf_counter()
        source, store = write_synthetic_store(Path(tmp), images=images, committed=committed,
                                              part_rows=part_rows)
        setup_s = time.perf_counter() - clock
        first = _plan_in_subprocess(source, store)
        second = _plan_in_subprocess(source, store)
    return {"images": images, "committed": committed, "part_rows": part_rows,
            "records": -(-committed // part_rows), "setup_s": round(setup_s, 1), **first,
            "compacted": second}
