"""Whole-file reads of many small store files: concurrent on object stores, retried with backoff.

A read that fails (a raised error, or a blob that `parse` rejects) is tried again after a growing
pause, up to `RETRY_ATTEMPTS` times; a missing file is not retried (the caller lists again).
What still fails is returned to the caller, which decides what it means (never silently dropped).

"Missing" is the object store's answer, never a cached listing's: s3fs's `_cat_file` looks the
file's size up first and answers FileNotFoundError without asking S3 when this process listed
the file's folder before another process wrote the file (a labelling driver lists data/ in its
cleanup, then its workers write new parts). A file found missing is read once more with the
cached listing of its folder dropped; only then is it reported missing.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fsspec.asyn import _run_coros_in_chunks, sync

from autosod.io.filesystem import is_local

__all__ = ["FIRST_DELAY_S", "MAX_DELAY_S", "RETRY_ATTEMPTS", "Fetched", "fetch_parsed"]

logger = logging.getLogger(__name__)

RETRY_ATTEMPTS = 6  # reads per file before giving up
FIRST_DELAY_S = 0.25  # pause before the second attempt; doubled each time
MAX_DELAY_S = 4.0  # longest pause (all six attempts take about 8 s)

T = TypeVar("T")


@dataclass
class Fetched(Generic[T]):
    """Parsed contents by path; paths that were missing; paths that failed every attempt."""

    parsed: dict[str, T] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)
    attempts: int = 0


def _read_all(fs: Any, paths: list[str]) -> list[bytes | BaseException]:
    """One read of each path (concurrent GETs on async filesystems); errors are returned."""
    if getattr(fs, "async_impl", False):
        async def gather() -> list:
            coros = [fs._cat_file(path) for path in paths]
            return await _run_coros_in_chunks(coros, batch_size=fs.batch_size or 128,
                                              nofiles=True, return_exceptions=True)

        return sync(fs.loop, gather)
    out: list[bytes | BaseException] = []
    for path in paths:
        try:
            out.append(fs.cat_file(path))
        except Exception as exc:  # returned to the caller, who retries or reports it
            out.append(exc)
    return out


def _read_fresh(fs: Any, paths: list[str]) -> list[bytes | BaseException]:
    """`_read_all`, reading a file found missing once more without the cached listing of its
    folder, so that only the object store can call a file missing."""
    blobs = _read_all(fs, paths)
    gone = [i for i, blob in enumerate(blobs) if isinstance(blob, FileNotFoundError)]
    if gone and not is_local(fs):
        for folder in {posixpath.dirname(paths[i]) for i in gone}:
            fs.invalidate_cache(folder)
        for i, blob in zip(gone, _read_all(fs, [paths[i] for i in gone]), strict=True):
            blobs[i] = blob
    return blobs


def fetch_parsed(fs: Any, paths: list[str], parse: Callable[[bytes], T], *,
                 what: str) -> Fetched[T]:
    """Read and parse every path, retrying failures with backoff; `what` names them in logs."""
    result: Fetched[T] = Fetched()
    pending = list(paths)
    delay = FIRST_DELAY_S
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        result.attempts = attempt
        errors: dict[str, BaseException] = {}
        for path, blob in zip(pending, _read_fresh(fs, pending), strict=True):
            if isinstance(blob, FileNotFoundError):
                result.missing.append(path)
                continue
            if isinstance(blob, BaseException):
                errors[path] = blob
                continue
            try:
                result.parsed[path] = parse(blob)
            except Exception as exc:  # a damaged blob: read it again, then report it
                errors[path] = exc
        pending = list(errors)
        if not pending:
            return result
        if attempt < RETRY_ATTEMPTS:
            first = pending[0]
            logger.warning("%d %s could not be read (%s: %s: %s); attempt %d of %d in %.2f s",
                           len(pending), what, first, type(errors[first]).__name__,
                           errors[first], attempt + 1, RETRY_ATTEMPTS, delay)
            time.sleep(delay)
            delay = min(2 * delay, MAX_DELAY_S)
        else:
            result.failed = errors
    return result
