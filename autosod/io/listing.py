"""Fast recursive listing into Arrow: `os.scandir` for local trees, parallel key ranges for S3.

Both stream what they find into Arrow chunks (`uri` canonical, `size`), so ten million entries
cost their strings and no per-entry Python objects (s3fs's listing dicts are ~1 kB each).

S3: a key space is walked page by page (1,000 keys per `ListObjectsV2`). While fewer than
`_S3_MAX_WALKS` walks run, a walk whose page was truncated splits the rest of its key space by
the next character after its prefix: the branch of its last key continues from that key, and
the other branches are found with one-key probes (`StartAfter = prefix + char + U+10FFFF` skips
a whole branch) and walked in parallel. Flat prefixes of millions of keys (hash or numbered
names) are thus listed with many requests in flight, at about one request per 1,000 keys plus
one probe per branch; folder trees split the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from fsspec.asyn import sync

__all__ = ["LISTING_SCHEMA", "ListingStats", "list_local", "list_s3"]

logger = logging.getLogger(__name__)

LISTING_SCHEMA = pa.schema([pa.field("uri", pa.string()), pa.field("size", pa.int64())])
_S3_MAX_WALKS = 64  # key ranges walked at once
_S3_MAX_REQUESTS = 32  # ListObjectsV2 requests in flight
_PAGE_KEYS = 1000
_MAX_CHAR = "\U0010ffff"  # the largest code point: prefix + c + it sorts after branch c
_CHUNK_ROWS = 65_536


class _Chunks:
    """Accumulates (uri, size) pairs and flushes them to Arrow every `_CHUNK_ROWS`."""

    def __init__(self) -> None:
        self._uris: list[str] = []
        self._sizes: list[int | None] = []
        self._batches: list[pa.RecordBatch] = []

    def add(self, uri: str, size: int | None) -> None:
        self._uris.append(uri)
        self._sizes.append(size)
        if len(self._uris) >= _CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._uris:
            self._batches.append(pa.record_batch(
                [pa.array(self._uris, pa.string()), pa.array(self._sizes, pa.int64())],
                schema=LISTING_SCHEMA))
            self._uris, self._sizes = [], []

    def table(self) -> pa.Table:
        self._flush()
        return pa.Table.from_batches(self._batches, schema=LISTING_SCHEMA)


def list_local(root: str, extensions: tuple[str, ...]) -> pa.Table:
    """`uri` (`file://` + absolute path) and `size` of every file under `root` whose lower-cased
    name ends with one of `extensions`; symlinked directories are not followed (no cycles).
    Names that are not valid UTF-8 cannot be stored as URIs: they are left out with a warning."""
    found = _Chunks()
    undecodable = 0
    stack = [os.path.abspath(root)]
    while stack:
        directory = stack.pop()
        try:
            entries = os.scandir(directory)
        except OSError as exc:
            logger.warning("cannot list %s: %s; its images are left out", directory, exc)
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.name.lower().endswith(extensions) and entry.is_file():
                    if not entry.path.isprintable() and not _utf8(entry.path):
                        undecodable += 1
                        continue
                    found.add("file://" + entry.path, entry.stat().st_size)
    if undecodable:
        logger.warning("left out %d files under %s whose names are not valid UTF-8; rename "
                       "them to include them", undecodable, root)
    return found.table()


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class ListingStats:
    """Requests an S3 listing made: pages of keys and one-key probes."""

    pages: int = 0
    probes: int = 0
    walks: int = 0
    keys: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class _S3Walker:
    """Walks the keys under one prefix of a bucket (see the module docstring)."""

    def __init__(self, fs: Any, bucket: str, extensions: tuple[str, ...], max_walks: int) -> None:
        self._fs, self._bucket, self._exts = fs, bucket, extensions
        self._max_walks = max_walks
        self._requests = asyncio.Semaphore(_S3_MAX_REQUESTS)
        self._live = 0
        self.found = _Chunks()
        self.stats = ListingStats()

    async def _list(self, prefix: str, after: str | None, max_keys: int) -> tuple[list, bool]:
        kwargs = {"Bucket": self._bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if after is not None:
            kwargs["StartAfter"] = after
        async with self._requests:
            response = await self._fs._call_s3("list_objects_v2", **kwargs)
        return response.get("Contents", []), bool(response.get("IsTruncated"))

    async def walk(self, prefix: str, after: str | None = None) -> None:
        self._live += 1
        self.stats.walks += 1
        try:
            await self._walk(prefix, after)
        finally:
            self._live -= 1

    async def _walk(self, prefix: str, after: str | None) -> None:
        while True:
            contents, truncated = await self._list(prefix, after, _PAGE_KEYS)
            self.stats.pages += 1
            for item in contents:
                key = item["Key"]
                self.stats.keys += 1
                if key.lower().endswith(self._exts):
                    self.found.add(f"s3://{self._bucket}/{key}", int(item["Size"]))
            if not truncated or not contents:
                return
            after = contents[-1]["Key"]
            if self._live < self._max_walks and len(after) > len(prefix):
                branch = prefix + after[len(prefix)]
                await asyncio.gather(self.walk(branch, after), self._other_branches(prefix, branch))
                return

    async def _other_branches(self, prefix: str, branch: str) -> None:
        """Walk, in parallel, each branch of `prefix` that sorts after `branch`."""
        walked, walks = {branch}, []
        after = branch + _MAX_CHAR
        while True:
            contents, _ = await self._list(prefix, after, 1)
            self.stats.probes += 1
            if not contents:
                break
            key = contents[0]["Key"]
            branch = prefix + key[len(prefix)]
            if branch in walked:  # a key past the skip marker of a walked branch
                after = key
                continue
            walked.add(branch)
            walks.append(asyncio.ensure_future(self.walk(branch)))
            after = branch + _MAX_CHAR
        await asyncio.gather(*walks)


def list_s3(fs: Any, path: str, extensions: tuple[str, ...], *,
            max_walks: int = _S3_MAX_WALKS) -> tuple[pa.Table, ListingStats]:
    """`uri` (`s3://bucket/key`) and `size` of every object under the S3 prefix `path`
    ("bucket/prefix") whose lower-cased key ends with one of `extensions`; and the requests made.
    """
    bucket, _, key = path.partition("/")
    if not bucket:
        raise ValueError(f"S3 source needs a bucket, got {path!r}; use s3://bucket/prefix")
    prefix = key.rstrip("/") + "/" if key else ""

    async def run() -> _S3Walker:
        walker = _S3Walker(fs, bucket, extensions, max_walks)
        await walker.walk(prefix)
        return walker

    walker = sync(fs.loop, run)
    logger.debug("listed s3://%s/%s: %s", bucket, prefix, walker.stats)
    return walker.found.table(), walker.stats
