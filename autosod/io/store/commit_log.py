"""Commit records of the mask store: one small JSON per committed part, written last.

Only these functions read commit state. A record lists the part's image ids (and the failed
ones with their status), so `committed_ids` never opens a Parquet file.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from autosod.io.filesystem import is_local, put_atomic
from autosod.io.status import OK
from autosod.io.store.schema import SCHEMA_VERSION

__all__ = ["Commit", "build_commit", "exclusions", "read_commits", "write_commit"]

logger = logging.getLogger(__name__)

COMMITS_DIR = "commits"


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


def _list_commit_files(fs: Any, root: str) -> list[str]:
    directory = posixpath.join(root, COMMITS_DIR)
    try:
        if not is_local(fs):
            fs.invalidate_cache(directory)
        names = fs.ls(directory, detail=False)
    except FileNotFoundError:
        return []
    return sorted(
        n for n in names if posixpath.basename(n).startswith("shard-") and n.endswith(".json")
    )


def read_commits(fs: Any, root: str) -> list[Commit]:
    """All commit records, oldest first (ties broken by name); unreadable ones are skipped
    with a warning (a record is only ever replaced atomically, so this means damage)."""
    paths = _list_commit_files(fs, root)
    if not paths:
        return []
    blobs = fs.cat(paths, on_error="omit")  # concurrent GETs on S3
    commits = []
    for path, blob in blobs.items():
        try:
            record = json.loads(blob)
            record["ids"] = tuple(record["ids"])
            commits.append(Commit(**record))
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("skipping unreadable commit record %s: %s", path, exc)
    commits.sort(key=lambda c: (c.committed_at_ns, c.name))
    return commits


def exclusions(commits: list[Commit]) -> list[set[str]]:
    """Per commit, the ids that a later commit also holds (the newest copy of an id wins)."""
    seen: set[str] = set()
    excluded: list[set[str]] = []
    for commit in reversed(commits):
        ids = set(commit.ids)
        excluded.append(ids & seen if seen else set())
        seen |= ids
    excluded.reverse()
    return excluded
