"""Commit records of the mask store: one small JSON per committed part, written last.

A record lists the part's image ids (and the failed ones with their status), so the commit state
never needs a Parquet scan. Records are read by `log_reader.read_log`, which also reads the
compacted files that replace many records (`compaction.py`).
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from autosod.io.filesystem import put_atomic
from autosod.io.status import OK
from autosod.io.store.schema import SCHEMA_VERSION

__all__ = [
    "COMMITS_DIR",
    "Commit",
    "CommitLogError",
    "PartRef",
    "build_commit",
    "is_record_name",
    "parse_record",
    "write_commit",
]

COMMITS_DIR = "commits"


class CommitLogError(RuntimeError):
    """A file of the commit log could not be read or parsed: the committed rows are unknown,
    so nothing may be deleted or relabelled until it is readable again."""


@dataclass(frozen=True)
class PartRef:
    """One committed part file, as the commit log knows it (no ids; those are in the log's rows).

    `name` is the commit record's file name, `data` the part's Parquet path relative to the
    store root. Parts are ordered by (`committed_at_ns`, `name`): the newest copy of an id wins.
    """

    name: str
    data: str
    shard: int
    part_key: str
    rows: int
    config_hash: str
    committed_at_ns: int
    schema_version: int

    @property
    def order(self) -> tuple[int, str]:
        return (self.committed_at_ns, self.name)


@dataclass(frozen=True)
class Commit:
    """One committed part: `data` is its Parquet path relative to the store root."""

    shard: int
    part_key: str
    data: str
    rows: int
    ids: tuple[str, ...]
    failed: dict[str, str]  # image_id -> failure status
    config_hash: str
    committed_at_ns: int
    schema_version: int = 1  # of the part file (records before version 2 do not say)

    @property
    def name(self) -> str:
        return f"shard-{self.shard:06d}-part-{self.part_key}.json"

    @property
    def ref(self) -> PartRef:
        return PartRef(name=self.name, data=self.data, shard=self.shard, part_key=self.part_key,
                       rows=self.rows, config_hash=self.config_hash,
                       committed_at_ns=self.committed_at_ns, schema_version=self.schema_version)

    def rows_table(self) -> pa.Table:
        """(image_id, status) of every row of the part."""
        statuses = [self.failed.get(image_id, OK) for image_id in self.ids]
        return pa.table({"image_id": pa.array(self.ids, pa.string()),
                         "status": pa.array(statuses, pa.string())})


def is_record_name(name: str) -> bool:
    """True for the file name of a commit record (`shard-*.json`)."""
    return name.startswith("shard-") and name.endswith(".json")


def build_commit(table: pa.Table, *, shard: int, part_key: str, data: str, cfg: str) -> Commit:
    """Commit record for a part table with columns image_id and status (sorted by id)."""
    failed_mask = pc.not_equal(table["status"], OK)
    failed_rows = table.filter(failed_mask)
    return Commit(
        shard=shard,
        part_key=part_key,
        data=data,
        rows=table.num_rows,
        ids=tuple(table["image_id"].to_pylist()),
        failed=dict(
            zip(failed_rows["image_id"].to_pylist(), failed_rows["status"].to_pylist(), strict=True)
        ),
        config_hash=cfg,
        committed_at_ns=time.time_ns(),
        schema_version=SCHEMA_VERSION,
    )


def write_commit(fs: Any, root: str, commit: Commit) -> None:
    """Write the record atomically; from now on the part is visible to readers."""
    record = {**commit.__dict__, "ids": list(commit.ids)}
    path = posixpath.join(root, COMMITS_DIR, commit.name)
    put_atomic(fs, path, json.dumps(record, separators=(",", ":")).encode("utf-8"))


def parse_record(blob: bytes) -> Commit:
    """The `Commit` in a record's bytes; ValueError when they are not a whole, valid record."""
    try:
        record = json.loads(blob)
        record["ids"] = tuple(record["ids"])
        commit = Commit(**record)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a commit record: {type(exc).__name__}: {exc}") from exc
    if len(commit.ids) != commit.rows:
        raise ValueError(f"not a commit record: {len(commit.ids)} ids for {commit.rows} rows")
    return commit
