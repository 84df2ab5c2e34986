"""The Parquet mask store: one row per image, committed per part, safe to rerun.

Layout under the store root (a local directory or `s3://bucket/prefix`)::

    store.json                                         config, config_hash, schema version
    data/shard-{shard:06d}/part-{part_key}.parquet     rows of one part (`STORE_SCHEMA`)
    commits/shard-{shard:06d}-part-{part_key}.json     commit record, written last
    commits/compacted-{ns:020d}-{hex}.parquet          many records in one file (compaction)
    summaries/run-*.json, summaries/latest.json        run summaries
    manifest.parquet                                   the listing the run used
    scratch/run-*/                                     a run's working files (its todo list)

`part_key` is a hash of the part's sorted image ids, so rewriting the same rows replaces the
same file. Readers read only committed parts and keep the newest copy of an image id. The
commit log is read whole or not at all (`CommitLogError`), so that no caller ever acts on a
partial view of what is committed.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from autosod.io.filesystem import open_filesystem, put_atomic
from autosod.io.manifest import read_manifest, write_manifest
from autosod.io.store import files as store_files
from autosod.io.store.commit_log import Commit, PartRef, build_commit, write_commit
from autosod.io.store.compaction import compact
from autosod.io.store.log_reader import read_log
from autosod.io.store.log_state import CommitLog, StorePart
from autosod.io.store.reader import iter_part_batches, read_parts
from autosod.io.store.schema import (
    STORE_SCHEMA,
    config_differences,
    config_hash,
    to_store_table,
)

__all__ = ["MODES", "UNCOMMITTED_MIN_AGE_S", "MaskStore", "StoreConfigMismatchError",
           "StorePart"]

logger = logging.getLogger(__name__)

MODES = ("resume", "overwrite")
UNCOMMITTED_MIN_AGE_S = 3600.0  # cleanup deletes uncommitted files only once this old


class StoreConfigMismatchError(ValueError):
    """The store was created with a different configuration than the one given."""


class MaskStore:
    """A mask store opened with `MaskStore.open(...)`; picklable (safe to send to workers)."""

    def __init__(self, fs: Any, root: str, uri: str, meta: dict, write_hash: str) -> None:
        self._fs, self._root, self.uri = fs, root, uri
        self._meta = meta
        self._write_hash = write_hash

    @classmethod
    def open(
        cls,
        uri: str,
        *,
        config: dict | None = None,
        mode: str = "resume",
        allow_config_mismatch: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> MaskStore:
        """Open the store at `uri`, creating it (with `config`) when absent.

        `mode="resume"` keeps committed rows; `"overwrite"` deletes all rows, commits and
        summaries first (only the job's driver should do this, never a worker). With
        `config=None` an existing store is opened with its own configuration. A different
        `config` raises `StoreConfigMismatchError` unless `allow_config_mismatch=True` (rows
        then carry the new hash in `config_hash`, and store.json lists it).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        fs, root = open_filesystem(uri, storage_options)
        meta = store_files.read_meta(fs, root)
        if meta is None:
            if config is None:
                raise FileNotFoundError(
                    f"no mask store at {uri} (store.json missing); pass config= to create one"
                )
            meta = store_files.create_meta(fs, root, config)
            logger.info("created mask store %s (config %s)", uri, meta["config_hash"])
        elif mode == "overwrite":
            store_files.wipe(fs, root)
            config = config if config is not None else meta["config"]
            meta = store_files.create_meta(fs, root, config)
            logger.info("overwrote mask store %s (config %s)", uri, meta["config_hash"])
        write_hash = meta["config_hash"]
        if config is not None and config_hash(config) != meta["config_hash"]:
            write_hash = config_hash(config)
            if not allow_config_mismatch:
                changed = config_differences(meta["config"], config)
                raise StoreConfigMismatchError(
                    f"store {uri} was written with config {meta['config_hash']} but this run "
                    f"has config {write_hash} ({'; '.join(changed[:5]) or 'no key differs'}"
                    f"{f'; {len(changed) - 5} more' if len(changed) > 5 else ''}); give the "
                    "store's settings to resume it, or use a new store or `--mode overwrite` "
                    "(deletes its rows); from Python, allow_config_mismatch=True mixes results"
                )
            logger.warning("mixing config %s into store %s (config %s)",
                           write_hash, uri, meta["config_hash"])
            meta = store_files.add_mixed_config(fs, root, meta, config)
        return cls(fs, root, uri, meta, write_hash)

    @property
    def config(self) -> dict:
        """The configuration the store was created with."""
        return self._meta["config"]

    @property
    def config_hash(self) -> str:
        """Hash of `config` (what `config_hash(config)` returns)."""
        return self._meta["config_hash"]

    def _path(self, *parts: str) -> str:
        return posixpath.join(self._root, *parts)

    def write_part(self, rows: Any, *, shard: int) -> Commit | None:
        """Write one part of rows for `shard` and commit it; returns its commit (None if empty).

        `rows`: a pyarrow Table, dict of columns or list of row dicts with `STORE_SCHEMA`
        columns (`image_id`, `uri`, `status` required). The file name is a hash of the sorted
        ids: writing the same ids again replaces the part instead of adding rows.
        """
        if not isinstance(shard, int) or shard < 0:
            raise ValueError(f"shard must be a non-negative int, got {shard!r}")
        table = to_store_table(rows, config_hash=self._write_hash).sort_by("image_id")
        if table.num_rows == 0:
            return None
        ids = table["image_id"].to_pylist()
        part_key = hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16]
        data = f"data/shard-{shard:06d}/part-{part_key}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        put_atomic(self._fs, self._path(data), sink.getvalue().to_pybytes())
        commit = build_commit(table, shard=shard, part_key=part_key, data=data,
                              cfg=self._write_hash)
        self._write_commit(commit)
        return commit

    def _write_commit(self, commit: Commit) -> None:
        write_commit(self._fs, self._root, commit)

    def commit_log(self, *, previous: CommitLog | None = None) -> CommitLog:
        """The commit log, read whole (raises `CommitLogError` naming a file that cannot be
        read or parsed after retries). With `previous`, only files added since are read."""
        return read_log(self._fs, self._root, self.uri, previous=previous)

    def _log(self, log: CommitLog | None) -> CommitLog:
        return log if log is not None else self.commit_log()

    def compact(self, log: CommitLog | None = None) -> CommitLog:
        """Replace the commit records by one compacted file (driver only, no writer running);
        returns the log as it now is. Readers see the same rows before and after."""
        return compact(self._fs, self._root, self._log(log))

    def commits(self, log: CommitLog | None = None) -> list[PartRef]:
        """The committed parts, oldest first (parts whose rows were all replaced included)."""
        return list(self._log(log).parts)

    def committed_ids(self, log: CommitLog | None = None) -> set[str]:
        """Ids of every committed row, whatever its status (from the commit log only)."""
        return self._log(log).committed_ids()

    def done_ids(self, *, retry_failed: bool = False, log: CommitLog | None = None) -> set[str]:
        """Ids a resumed run should skip: all committed ids, or, when `retry_failed`, all but
        those whose newest row failed for a retryable reason (`RETRYABLE_STATUSES`)."""
        return set(self._log(log).done_ids(retry_failed=retry_failed).to_pylist())

    def status_counts(self, log: CommitLog | None = None) -> dict[str, int]:
        """Number of visible rows per status (newest copy of each id)."""
        return self._log(log).status_counts()

    def _columns(self, columns: list[str] | None) -> list[str]:
        columns = list(columns) if columns is not None else list(STORE_SCHEMA.names)
        unknown = [c for c in columns if c not in STORE_SCHEMA.names]
        if unknown:
            raise ValueError(f"unknown store columns {unknown}; choose from {STORE_SCHEMA.names}")
        return columns

    def read(self, columns: list[str] | None = None, *, log: CommitLog | None = None
             ) -> pa.Table:
        """All committed rows (the newest copy of each image id) as one table.

        Row order is unspecified; sort by `image_id` when order matters.
        """
        plan = self.parts(log)
        return read_parts(self._fs, self._root, plan, self._columns(columns))

    def iter_batches(
        self, columns: list[str] | None = None, *, batch_size: int = 1024,
        log: CommitLog | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Committed rows as record batches of at most `batch_size` rows (memory stays flat)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        plan = self.parts(log)
        yield from iter_part_batches(self._fs, self._root, plan, self._columns(columns),
                                     batch_size)

    def parts(self, log: CommitLog | None = None) -> list[StorePart]:
        """The committed parts, oldest first; together they hold every visible row once.

        What distributed readers map over: `store.parts()` on the driver, `store.read_part(part)`
        on the workers (each task gets its own small `StorePart`), so rows never pass through
        the driver."""
        return self._log(log).store_parts()

    def read_part(self, part: StorePart, columns: list[str] | None = None) -> pa.Table:
        """The visible rows of one part (rows a newer part replaces are left out)."""
        return read_parts(self._fs, self._root, [part], self._columns(columns))

    def write_summary(self, summary: dict) -> str:
        """Save a run summary as `summaries/run-*.json` and as the latest; returns its URI."""
        return store_files.write_summary(self._fs, self._root, self.uri, summary)

    def latest_summary(self) -> dict | None:
        """The most recently written run summary, or None."""
        return store_files.read_json(self._fs, self._path("summaries", "latest.json"))

    def save_manifest(self, manifest: pa.Table) -> None:
        """Keep the run's manifest with the store (`manifest.parquet`)."""
        write_manifest(self._fs, self._path("manifest.parquet"), manifest)

    def load_manifest(self) -> pa.Table | None:
        """The manifest saved with the store, or None."""
        path = self._path("manifest.parquet")
        if not self._fs.exists(path):
            return None
        return read_manifest(self._fs, path, where=path)

    def manifest_file(self) -> pq.ParquetFile | None:
        """The saved manifest opened for streaming (metadata, row groups, batches), or None."""
        path = self._path("manifest.parquet")
        if not self._fs.exists(path):
            return None
        return pq.ParquetFile(self._fs.open(path, "rb"))

    @property
    def filesystem(self) -> Any:
        """The store's fsspec filesystem (for readers such as Ray Data's `read_parquet`)."""
        return self._fs

    def scratch_dir(self, run_id: str) -> str:
        """Path (on `filesystem`) of a run's working folder `scratch/<run_id>`."""
        return self._path(store_files.SCRATCH_DIR, run_id)

    def remove_scratch(self, run_id: str) -> None:
        """Delete a run's working folder (its todo list) once the run is over."""
        path = self.scratch_dir(run_id)
        if self._fs.exists(path):
            self._fs.rm(path, recursive=True)

    def remove_uncommitted(self, log: CommitLog | None = None, *,
                           min_age_s: float = UNCOMMITTED_MIN_AGE_S,
                           keep_scratch: str | None = None) -> int:
        """Delete data files no commit names, temp files of interrupted writes and old runs'
        scratch folders, all last modified at least `min_age_s` ago; returns the count.

        Only files that are provably uncommitted go: `log` must be the whole commit log (a log
        that cannot be read raises before anything is deleted), and the age rule spares a
        writer that is still running (data written, commit record not yet). Call from the
        driver before its writers start; `keep_scratch` is this run's scratch folder.
        """
        referenced = {self._path(part.data) for part in self._log(log).parts}
        return store_files.remove_unreferenced(self._fs, self._root, referenced,
                                               min_age_s=min_age_s, keep_scratch=keep_scratch)
