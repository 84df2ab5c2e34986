"""The Parquet mask store: one row per image, committed per part, safe to rerun.

Layout under the store root (a local directory or `s3://bucket/prefix`)::

    store.json                                         config, config_hash, schema version
    data/shard-{shard:06d}/part-{part_key}.parquet     rows of one part (`STORE_SCHEMA`)
    commits/shard-{shard:06d}-part-{part_key}.json     commit record, written last
    summaries/run-*.json, summaries/latest.json        run summaries
    manifest.parquet                                   the listing the run used

`part_key` is a hash of the part's sorted image ids, so rewriting the same rows replaces the
same file. Readers read only committed parts and keep the newest copy of an image id.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from autosod.io.filesystem import open_filesystem, put_atomic
from autosod.io.manifest import read_manifest, write_manifest
from autosod.io.status import OK
from autosod.io.store import files as store_files
from autosod.io.store.commit_log import Commit, build_commit, exclusions, read_commits, write_commit
from autosod.io.store.reader import iter_part_batches, read_parts
from autosod.io.store.schema import (
    STORE_SCHEMA,
    config_differences,
    config_hash,
    to_store_table,
)

__all__ = ["MODES", "MaskStore", "StoreConfigMismatchError", "StorePart"]

logger = logging.getLogger(__name__)

MODES = ("resume", "overwrite")


class StoreConfigMismatchError(ValueError):
    """The store was created with a different configuration than the one given."""


@dataclass(frozen=True)
class StorePart:
    """One committed part and the ids in it that a newer part replaces (picklable).

    What distributed readers map over: `store.parts()` on the driver, `store.read_part(part)`
    on the workers, so that the rows never pass through the driver.
    """

    commit: Commit
    replaced: frozenset[str]


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

    def commits(self) -> list[Commit]:
        """Commit records of all visible parts, oldest first."""
        return read_commits(self._fs, self._root)

    def committed_ids(self) -> set[str]:
        """Ids of every committed row, whatever its status (read from commit records only)."""
        return {image_id for commit in self.commits() for image_id in commit.ids}

    def done_ids(self, *, retry_failed: bool = False) -> set[str]:
        """Ids a resumed run should skip: all committed ids, or only those whose newest row
        is ok when `retry_failed`."""
        if not retry_failed:
            return self.committed_ids()
        return {i for i, status in self._newest_statuses().items() if status == OK}

    def _newest_statuses(self) -> dict[str, str]:
        statuses: dict[str, str] = {}
        for commit in self.commits():
            for image_id in commit.ids:
                statuses[image_id] = commit.failed.get(image_id, OK)
        return statuses

    def status_counts(self) -> dict[str, int]:
        """Number of visible rows per status (newest copy of each id)."""
        counts: dict[str, int] = {}
        for status in self._newest_statuses().values():
            counts[status] = counts.get(status, 0) + 1
        return dict(sorted(counts.items()))

    def _part_plan(self) -> list[tuple[Commit, set[str]]]:
        commits = self.commits()
        return list(zip(commits, exclusions(commits), strict=True))

    def _columns(self, columns: list[str] | None) -> list[str]:
        columns = list(columns) if columns is not None else list(STORE_SCHEMA.names)
        unknown = [c for c in columns if c not in STORE_SCHEMA.names]
        if unknown:
            raise ValueError(f"unknown store columns {unknown}; choose from {STORE_SCHEMA.names}")
        return columns

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """All committed rows (the newest copy of each image id) as one table.

        Row order is unspecified; sort by `image_id` when order matters.
        """
        return read_parts(self._fs, self._root, self._part_plan(), self._columns(columns))

    def iter_batches(
        self, columns: list[str] | None = None, *, batch_size: int = 1024
    ) -> Iterator[pa.RecordBatch]:
        """Committed rows as record batches of at most `batch_size` rows (memory stays flat)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        yield from iter_part_batches(
            self._fs, self._root, self._part_plan(), self._columns(columns), batch_size
        )

    def parts(self) -> list[StorePart]:
        """The committed parts, oldest first; together they hold every visible row once."""
        return [StorePart(commit, frozenset(replaced)) for commit, replaced in self._part_plan()]

    def read_part(self, part: StorePart, columns: list[str] | None = None) -> pa.Table:
        """The visible rows of one part (rows a newer part replaces are left out)."""
        plan = [(part.commit, set(part.replaced))]
        return read_parts(self._fs, self._root, plan, self._columns(columns))

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

    def remove_uncommitted(self) -> int:
        """Delete data files no commit refers to (left by killed writers); returns the count.

        Call only while no writer is running (e.g. from the driver before a run starts).
        """
        referenced = {self._path(c.data) for c in self.commits()}
        return store_files.remove_unreferenced(self._fs, self._root, referenced)
