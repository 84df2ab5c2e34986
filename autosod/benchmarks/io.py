"""`python jobs/benchmark.py io`: listing into a manifest and reading the mask store.

Creates N empty `*.jpg` files in a temporary tree and times `build_manifest` against the
listing a user would write first (`os.walk` + `os.stat`) and against fsspec's generic `find`.
Writes an N-row store (small real PNG masks) and times `MaskStore.read` / `iter_batches` /
`done_ids` against pyarrow reading the same Parquet files directly (no commit logic).
Each timing is the best of `repeats`; ratios > 1 mean autosod is faster than the reference.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from autosod.io import (
    DEFAULT_EXTENSIONS,
    MaskStore,
    build_manifest,
    encode_mask_png,
    encode_soft_png,
)

__all__ = ["make_file_tree", "run_io_benchmark"]

logger = logging.getLogger(__name__)

_FILES_PER_DIR = 1000
_PART_ROWS = 1000


def _best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """(best wall time in seconds, last result) over `repeats` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def make_file_tree(root: Path, count: int) -> None:
    """`count` empty image files (`.jpg`, every 10th `.JPG`) in folders of 1,000, plus one
    non-image file per folder."""
    for index in range(count):
        folder = root / f"d{index // _FILES_PER_DIR:04d}"
        if index % _FILES_PER_DIR == 0:
            folder.mkdir(parents=True)
            (folder / "notes.txt").touch()
        suffix = ".JPG" if index % 10 == 0 else ".jpg"
        os.close(os.open(folder / f"{index:07d}{suffix}", os.O_CREAT | os.O_WRONLY, 0o644))


def _reference_walk(root: Path) -> list[tuple[str, int]]:
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            if name.lower().endswith(DEFAULT_EXTENSIONS):
                path = os.path.join(folder, name)
                found.append((path, os.stat(path).st_size))
    return found


def _fsspec_find(root: Path) -> list[str]:
    infos = LocalFileSystem().find(str(root), detail=True)
    return [p for p in infos if p.lower().endswith(DEFAULT_EXTENSIONS)]


def _bench_listing(root: Path, files: int, repeats: int) -> dict[str, Any]:
    start = time.perf_counter()
    make_file_tree(root, files)
    created_s = time.perf_counter() - start
    walk_s, walked = _best_of(repeats, lambda: _reference_walk(root))
    find_s, found = _best_of(repeats, lambda: _fsspec_find(root))
    manifest_s, table = _best_of(repeats, lambda: build_manifest(str(root)))
    if not table.num_rows == len(walked) == len(found) == files:
        raise RuntimeError(f"listing counts differ: {table.num_rows}, {len(walked)}, {len(found)}")
    return {
        "files": files,
        "create_tree_s": round(created_s, 3),
        "build_manifest_s": round(manifest_s, 3),
        "build_manifest_files_per_s": round(files / manifest_s),
        "os_walk_stat_s": round(walk_s, 3),
        "fsspec_find_s": round(find_s, 3),
        "speed_vs_os_walk": round(walk_s / manifest_s, 3),
        "speed_vs_fsspec_find": round(find_s / manifest_s, 3),
    }


def _rows(start: int, stop: int, mask_png: bytes, soft_png: bytes) -> dict[str, list]:
    count = stop - start
    return {
        "image_id": [f"{i:020x}" for i in range(start, stop)],
        "uri": [f"s3://bucket/images/{i:08d}.jpg" for i in range(start, stop)],
        "width": [64] * count,
        "height": [48] * count,
        "status": ["ok"] * count,
        "mask_png": [mask_png] * count,
        "saliency_png": [soft_png] * count,
        "fg_fraction": [0.3] * count,
    }


def _bench_store(root: Path, rows: int, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    mask_png = encode_mask_png(rng.random((48, 64)) > 0.5)
    soft_png = encode_soft_png(rng.integers(0, 256, (48, 64), dtype=np.uint8))
    store = MaskStore.open(str(root), config={"benchmark": "io"}, mode="overwrite")
    start = time.perf_counter()
    for part_start in range(0, rows, _PART_ROWS):
        stop = min(rows, part_start + _PART_ROWS)
        store.write_part(_rows(part_start, stop, mask_png, soft_png), shard=part_start // 10_000)
    write_s = time.perf_counter() - start
    read_s, table = _best_of(repeats, store.read)
    batches_s, _ = _best_of(repeats, lambda: sum(b.num_rows for b in store.iter_batches()))
    ids_s, done = _best_of(repeats, store.done_ids)
    ref_s, ref = _best_of(repeats, lambda: pq.read_table(root / "data"))
    if not table.num_rows == ref.num_rows == len(done) == rows:
        raise RuntimeError(f"row counts differ: {table.num_rows}, {ref.num_rows}, {len(done)}")
    return {
        "rows": rows,
        "parts": (rows + _PART_ROWS - 1) // _PART_ROWS,
        "bytes_on_disk": sum(p.stat().st_size for p in (root / "data").rglob("*.parquet")),
        "write_s": round(write_s, 3),
        "write_rows_per_s": round(rows / write_s),
        "read_s": round(read_s, 3),
        "read_rows_per_s": round(rows / read_s),
        "iter_batches_s": round(batches_s, 3),
        "done_ids_s": round(ids_s, 3),
        "pyarrow_read_table_s": round(ref_s, 3),
        "read_speed_vs_pyarrow": round(ref_s / read_s, 3),
    }


def run_io_benchmark(
    *, files: int = 100_000, rows: int = 100_000, repeats: int = 3, workdir: str | None = None
) -> dict[str, Any]:
    """Time manifest listing of `files` local files and reading a `rows`-row local store."""
    if files < 1 or rows < 1 or repeats < 1:
        raise ValueError(f"files, rows and repeats must be >= 1, got {files}, {rows}, {repeats}")
    with tempfile.TemporaryDirectory(dir=workdir, prefix="autosod-io-bench-") as tmp:
        logger.info("listing benchmark: %d files under %s", files, tmp)
        listing = _bench_listing(Path(tmp) / "tree", files, repeats)
        logger.info("store benchmark: %d rows", rows)
        store = _bench_store(Path(tmp) / "store", rows, repeats)
    return {
        "benchmark": "io",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip()
        + f", {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "date": dt.date.today().isoformat(),
        "repeats": repeats,
        "listing": listing,
        "store": store,
    }
