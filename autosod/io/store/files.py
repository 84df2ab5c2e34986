"""Small files of the mask store: `store.json`, run summaries, cleanup of stray files."""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
import time
import uuid
from typing import Any

from autosod.io.filesystem import is_local, join_uri, put_atomic
from autosod.io.store.schema import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION, config_hash

__all__ = [
    "SCRATCH_DIR",
    "add_mixed_config",
    "create_meta",
    "read_json",
    "read_meta",
    "remove_unreferenced",
    "wipe",
    "write_summary",
]

logger = logging.getLogger(__name__)

META_FILE = "store.json"
SCRATCH_DIR = "scratch"  # per-run working files (the todo list a run feeds to Ray Data)
_WIPED_DIRS = ("commits", "data", "summaries", SCRATCH_DIR)  # commits first: rows vanish first


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, default=str).encode("utf-8")


def read_json(fs: Any, path: str) -> dict | None:
    """Parsed JSON file, or None when it does not exist."""
    if not is_local(fs):
        fs.invalidate_cache(posixpath.dirname(path))
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None


def read_meta(fs: Any, root: str) -> dict | None:
    """`store.json` of the store at `root`, checked for the schema version; None if absent."""
    meta = read_json(fs, posixpath.join(root, META_FILE))
    if meta is not None and meta.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        raise ValueError(
            f"store at {root} has schema version {meta.get('schema_version')!r}; this autosod "
            f"reads versions {READABLE_SCHEMA_VERSIONS}; use a new store or the matching "
            "autosod version"
        )
    return meta


def create_meta(fs: Any, root: str, config: dict) -> dict:
    """Write a fresh `store.json` for `config` and return it."""
    meta = {
        "schema_version": SCHEMA_VERSION,
        "config": json.loads(_dump(config)),
        "config_hash": config_hash(config),
        "created": _now().isoformat(),
        "mixed_configs": {},
    }
    put_atomic(fs, posixpath.join(root, META_FILE), _dump(meta))
    return meta


def add_mixed_config(fs: Any, root: str, meta: dict, config: dict) -> dict:
    """Record in `store.json` that rows of another config were allowed into the store."""
    key = config_hash(config)
    if key in meta.get("mixed_configs", {}):
        return meta
    meta = {**meta, "mixed_configs": {**meta.get("mixed_configs", {}), key: config}}
    put_atomic(fs, posixpath.join(root, META_FILE), _dump(meta))
    return meta


def wipe(fs: Any, root: str) -> None:
    """Delete commits, data and summaries of the store (overwrite mode)."""
    for name in _WIPED_DIRS:
        path = posixpath.join(root, name)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        if not is_local(fs):
            fs.invalidate_cache(path)


def write_summary(fs: Any, root: str, uri: str, summary: dict) -> str:
    """Save `summary` as `summaries/run-<UTC time>-<id>.json` and `summaries/latest.json`."""
    stamp = _now().strftime("%Y%m%dT%H%M%S%fZ")
    name = f"run-{stamp}-{uuid.uuid4().hex[:8]}.json"
    blob = _dump(summary)
    put_atomic(fs, posixpath.join(root, "summaries", name), blob)
    put_atomic(fs, posixpath.join(root, "summaries", "latest.json"), blob)
    return join_uri(uri, "summaries", name)


def _age_s(info: dict, now: float) -> float:
    """Seconds since a listed file was last modified (local `mtime` or S3 `LastModified`)."""
    modified = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    if isinstance(modified, dt.datetime):
        modified = modified.timestamp()
    if modified is None:
        return 0.0  # unknown age: treat as new, never delete
    return now - float(modified)


def _listing(fs: Any, path: str, *, recursive: bool) -> dict[str, dict]:
    if not fs.exists(path):
        return {}
    if not is_local(fs):
        fs.invalidate_cache(path)
    if recursive:
        return fs.find(path, detail=True)
    return {info["name"]: info for info in fs.ls(path, detail=True)}


def remove_unreferenced(fs: Any, root: str, referenced: set[str], *, min_age_s: float,
                        keep_scratch: str | None = None) -> int:
    """Delete files under `data/` not in `referenced`, temp files of interrupted writes, and
    the scratch folders of earlier runs: only those last modified at least `min_age_s` ago.

    `referenced` must hold every data file that any commit names (the caller read the whole
    commit log without error). The age rule protects a writer still running somewhere (a task
    of a killed driver), whose data file is written before its commit record. Returns the count.
    """
    now = time.time()
    removed = 0
    for directory in ("data", "commits", "summaries", ""):
        path = posixpath.join(root, directory) if directory else root
        for name, info in _listing(fs, path, recursive=directory == "data").items():
            if info.get("type") == "directory":
                continue
            stray = posixpath.basename(name).startswith(".tmp-")
            orphan = directory == "data" and name not in referenced
            if (stray or orphan) and _age_s(info, now) >= min_age_s:
                fs.rm_file(name)
                removed += 1
    scratch = posixpath.join(root, SCRATCH_DIR)
    for name, _ in _listing(fs, scratch, recursive=False).items():
        if name.rstrip("/") == (keep_scratch or "").rstrip("/"):
            continue
        files = _listing(fs, name, recursive=True)
        if all(_age_s(info, now) >= min_age_s for info in files.values()):
            fs.rm(name, recursive=True)
            removed += len(files)
    logger.info("removed %d uncommitted or temporary files from %s", removed, root)
    return removed
