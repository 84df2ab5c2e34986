"""Compaction of the commit log: many small records -> one Parquet file of committed ids.

`commits/compacted-<ns>-<hex>.parquet` holds one row per committed image id (`image_id`,
`status`, `part`: the newest copy) and, in its schema metadata, the list of parts. It is written
atomically; only once it is durable (and read back) are the records and the older compacted file
it replaces deleted. Readers read every log file present and merge them (a part is known by its
record name and commit time, the newest copy of an id wins), so a reader that meets a record the
compacted file already holds (a compaction interrupted before its deletions) gets the same
answer: nothing is lost in any crash window, and no file needs a list of what it replaces.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import time
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from autosod.io.filesystem import is_local, put_atomic
from autosod.io.store.commit_log import COMMITS_DIR, PartRef
from autosod.io.store.log_state import ROWS_SCHEMA, CommitLog, Source

__all__ = ["COMPACT_MIN_RECORDS", "compact", "decode_compacted", "is_compacted_name"]

logger = logging.getLogger(__name__)

COMPACT_MIN_RECORDS = 64  # the job compacts when the log has at least this many records
_META_KEY = b"autosod_compacted"
_FORMAT = 1


def is_compacted_name(name: str) -> bool:
    """True for the file name of a compacted commit log (`compacted-*.parquet`)."""
    return name.startswith("compacted-") and name.endswith(".parquet")


def _encode(log: CommitLog) -> bytes:
    meta = {"format": _FORMAT, "parts": [part.__dict__ for part in log.parts]}
    table = log.rows.sort_by("part").cast(ROWS_SCHEMA)
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta, separators=(",", ":"))})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, use_dictionary=["status"], row_group_size=1 << 20)
    return sink.getvalue().to_pybytes()


def decode_compacted(blob: bytes) -> Source:
    """The rows and parts of a compacted file; ValueError if `blob` is not one."""
    table = pq.read_table(pa.BufferReader(blob))
    raw = (table.schema.metadata or {}).get(_META_KEY)
    if raw is None:
        raise ValueError("not a compacted commit log: its schema metadata lacks "
                         f"{_META_KEY.decode()}")
    meta = json.loads(raw)
    if meta.get("format") != _FORMAT:
        raise ValueError(f"compacted commit log format {meta.get('format')!r}; this autosod "
                         f"reads format {_FORMAT}: upgrade autosod")
    parts = [PartRef(**part) for part in meta["parts"]]
    rows = table.select(ROWS_SCHEMA.names).cast(ROWS_SCHEMA).replace_schema_metadata(None)
    return Source(parts=parts, rows=rows, unique=True)


def _sync_dir(fs: Any, path: str) -> None:
    """On local disk, make a rename in `path` durable (S3 writes are durable when they return)."""
    if is_local(fs):
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def compact(fs: Any, root: str, log: CommitLog) -> CommitLog:
    """Write `log` as one compacted file, then delete the records and compacted files it was
    read from. Call only from the job's driver (never twice at once on one store).

    Returns the log as it now is on storage (same rows, read from the new file).
    """
    directory = posixpath.join(root, COMMITS_DIR)
    name = f"compacted-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    blob = _encode(log)
    path = posixpath.join(directory, name)
    put_atomic(fs, path, blob)
    _sync_dir(fs, directory)
    with fs.open(path, "rb") as handle:  # read back before anything it replaces is deleted
        written = pq.read_metadata(handle)
    if written.num_rows != log.num_ids or _META_KEY not in (written.metadata or {}):
        raise OSError(f"compacted commit log {path} reads back {written.num_rows} rows for "
                      f"{log.num_ids} ids; the records it should replace were kept")
    stale = sorted(log.record_files) + sorted(log.compacted_files)
    stale_paths = [posixpath.join(directory, n) for n in stale]
    if stale_paths:
        try:
            fs.rm(stale_paths)
        except OSError as exc:  # harmless: readers merge what is left
            logger.warning("compacted %s, but removing %d replaced files failed: %s",
                           name, len(stale_paths), exc)
    if not is_local(fs):
        fs.invalidate_cache(directory)
    logger.info("compacted %d commit records (%d ids) into %s", len(log.record_files),
                log.num_ids, name)
    return CommitLog(parts=log.parts, rows=log.rows, compacted_files=frozenset([name]))
