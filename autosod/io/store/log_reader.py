"""Reading the commit log: list `commits/`, read every record and compacted file, merge.

A file that cannot be read is retried with backoff (`fetch.py`); one that still cannot be read or
parsed raises `CommitLogError` naming it. Nothing is ever skipped: the committed rows would be
unknown, and a caller could then relabel them or delete their data. A listed file that vanished
meanwhile (a compaction replaced it) makes the reader list again.
"""

from __future__ import annotations

import logging
import posixpath
from typing import Any

import numpy as np
import pyarrow as pa

from autosod.io.filesystem import is_local, join_uri
from autosod.io.store.commit_log import (
    COMMITS_DIR,
    CommitLogError,
    PartRef,
    is_record_name,
    parse_record,
)
from autosod.io.store.compaction import decode_compacted, is_compacted_name
from autosod.io.store.fetch import fetch_parsed
from autosod.io.store.log_state import CommitLog, Source, assemble

__all__ = ["list_log", "read_log"]

logger = logging.getLogger(__name__)

_LIST_ATTEMPTS = 5  # listings in a row that met a vanished file before giving up
_FETCH_CHUNK = 1000  # files read per round (bounds the raw bytes held at once)


def _version(info: dict) -> str:
    """What changes when a file is rewritten: S3's ETag, else size and modification time."""
    if info.get("ETag"):
        return str(info["ETag"])
    return f"{info.get('size')}:{info.get('mtime') or info.get('LastModified')}"


def list_log(fs: Any, root: str) -> tuple[dict[str, str], list[str]]:
    """({record name: version}, compacted file names) in `commits/`; temp files are left out.

    Directories with a record's name are listed too: reading them fails loudly.
    """
    directory = posixpath.join(root, COMMITS_DIR)
    if not is_local(fs):
        fs.invalidate_cache(directory)
    try:
        infos = fs.ls(directory, detail=True)
    except FileNotFoundError:
        return {}, []
    named = {posixpath.basename(info["name"].rstrip("/")): info for info in infos}
    return ({n: _version(i) for n, i in sorted(named.items()) if is_record_name(n)},
            sorted(n for n in named if is_compacted_name(n)))


def _parse_record(blob: bytes) -> tuple[PartRef, pa.Table]:
    """A record's part and its (image_id, status) rows, straight into Arrow."""
    commit = parse_record(blob)
    return commit.ref, commit.rows_table()


def _record_source(records: list[tuple[PartRef, pa.Table]]) -> Source:
    """One source holding the rows of many parsed records (`part` = position in the list)."""
    tables = [table for _, table in records]
    counts = np.asarray([table.num_rows for table in tables], dtype=np.int64)
    part = np.repeat(np.arange(len(tables), dtype=np.int32), counts)
    rows = (pa.concat_tables(tables) if tables else
            pa.table({"image_id": pa.array([], pa.string()), "status": pa.array([], pa.string())}))
    return Source(parts=[ref for ref, _ in records],
                  rows=rows.append_column("part", pa.array(part)), unique=False)


def _fetch(fs: Any, directory: str, names: list[str], parse: Any, uri: str) -> dict | None:
    """name -> parsed file; None when a file vanished (list again); CommitLogError on damage."""
    parsed: dict[str, Any] = {}
    for start in range(0, len(names), _FETCH_CHUNK):
        chunk = _fetch_chunk(fs, directory, names[start : start + _FETCH_CHUNK], parse, uri)
        if chunk is None:
            return None
        parsed.update(chunk)
    return parsed


def _fetch_chunk(fs: Any, directory: str, names: list[str], parse: Any, uri: str) -> dict | None:
    paths = [posixpath.join(directory, name) for name in names]
    fetched = fetch_parsed(fs, paths, parse, what="commit-log files")
    if fetched.failed:
        path, exc = next(iter(sorted(fetched.failed.items())))
        name = posixpath.basename(path)
        damaged = isinstance(exc, ValueError) and not isinstance(exc, OSError)
        how = "cannot be parsed" if damaged else "cannot be read"
        more = f" (and {len(fetched.failed) - 1} more)" if len(fetched.failed) > 1 else ""
        raise CommitLogError(
            f"commit-log file {join_uri(uri, COMMITS_DIR, name)}{more} {how} after "
            f"{fetched.attempts} attempts ({type(exc).__name__}: {exc}); nothing was deleted "
            "or relabelled. Restore it (or access to it) and rerun; if it is lost for good, "
            "move it out of commits/ and rerun to label its images again")
    if fetched.missing:
        return None
    return {posixpath.basename(path): value for path, value in fetched.parsed.items()}


def read_log(fs: Any, root: str, uri: str, *, previous: CommitLog | None = None) -> CommitLog:
    """The commit log of the store at `root` (`uri` names files in errors).

    With `previous` (a log read earlier by this process), only files that appeared (or were
    rewritten) since are read, unless some of its files are gone (a compaction ran): then
    everything is read.
    """
    directory = posixpath.join(root, COMMITS_DIR)
    for _ in range(_LIST_ATTEMPTS):
        records, compacted = list_log(fs, root)
        keep = previous is not None and previous.compacted_files <= set(compacted) \
            and previous.record_files <= set(records)
        base = previous if keep else None
        new_records = [n for n, version in records.items()
                       if base is None or base.record_versions.get(n) != version]
        new_compacted = [n for n in compacted if base is None or n not in base.compacted_files]
        commits = _fetch(fs, directory, new_records, _parse_record, uri)
        files = _fetch(fs, directory, new_compacted, decode_compacted, uri)
        if commits is None or files is None:
            logger.info("a commit-log file vanished while being read (compaction); listing "
                        "again")
            continue
        sources = [files[name] for name in new_compacted]
        sources.append(_record_source([commits[name] for name in new_records]))
        if base is not None:
            sources.append(Source(parts=list(base.parts), rows=base.rows, unique=True))
        return assemble(sources, record_versions=records, compacted_files=frozenset(compacted))
    raise CommitLogError(
        f"the commit log of {uri} kept changing while it was read ({_LIST_ATTEMPTS} listings); "
        "another process is compacting it: wait for it to finish and rerun")
