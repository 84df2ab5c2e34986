"""Fast recursive listing into Arrow: `os.scandir` for local trees, parallel key ranges for S3.

Both stream what they find into Arrow chunks (`uri` canonical, `size`), so ten million entries
cost their strings and no per-entry Python objects (s3fs's listing dicts are ~1 kB each).

S3: a key space is walked page by page (1,000 keys per `ListObjectsV2`). While fewer than
`_S3_MAX_WALKS` walks run, a walk that has paged four times and is still truncated splits the
rest of its key space, the keys after its last key K: at each position j of K up to where its
first and last keys differ, the branches of K[:j] whose next character sorts after K[j], each
walked in parallel, and one walk for the rest of K's own branch. Branches are found with one-key
probes (`StartAfter = branch + U+10FFFF` skips a whole branch), sent at once from every
character seen in the listed keys. Numbered names (after img_00003999: img_0001..,
img_0002.., ..., img_001.., ...) and hashed names alike are cut into ranges of every size, so
flat prefixes of millions of keys are listed with many requests in flight, at about one request
per 1,000 keys plus the probes; small listings (four pages) stay sequential.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from fsspec.asyn import sync

__all__ = ["LISTING_SCHEMA", "ListingStats", "list_local", "list_s3"]

logger = logging.getLogger(__name__)

LISTING_SCHEMA = pa.schema([pa.field("uri", pa.string()), pa.field("size", pa.int64())])
_S3_MAX_WALKS = 64  # key ranges walked at once
_S3_MAX_REQUESTS = 32  # ListObjectsV2 requests in flight
_PAGE_KEYS = 1000
_PAGES_BEFORE_SPLIT = 4  # a walk pages on alone this long (small listings stay sequential)
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
    """Requests an S3 listing made: pages of keys, one-key probes, key ranges walked, and the
    longest chain of requests that waited on each other (round trips on the critical path)."""

    pages: int = 0
    probes: int = 0
    walks: int = 0
    keys: int = 0
    depth: int = 0


class _S3Walker:
    """Walks the keys under one prefix of a bucket (see the module docstring)."""

    def __init__(self, fs: Any, bucket: str, extensions: tuple[str, ...], *, max_walks: int,
                 page_keys: int, pages_before_split: int) -> None:
        self._fs, self._bucket, self._exts = fs, bucket, extensions
        self._max_walks, self._page_keys = max_walks, page_keys
        self._pages_before_split = pages_before_split
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

    async def walk(self, prefix: str, after: str | None = None, depth: int = 0) -> None:
        """List the keys under `prefix` after `after`; `depth` requests came before on this
        chain."""
        self._live += 1
        self.stats.walks += 1
        try:
            await self._walk(prefix, after, depth)
        finally:
            self._live -= 1

    async def _walk(self, prefix: str, after: str | None, depth: int) -> None:
        pages, first, alphabet = 0, None, set()
        while True:
            contents, truncated = await self._list(prefix, after, self._page_keys)
            self.stats.pages += 1
            pages += 1
            depth += 1
            self.stats.depth = max(self.stats.depth, depth)
            for item in contents:
                key = item["Key"]
                self.stats.keys += 1
                if key.lower().endswith(self._exts):
                    self.found.add(f"s3://{self._bucket}/{key}", int(item["Size"]))
            if not truncated or not contents:
                return
            first = first or contents[0]["Key"]
            after = contents[-1]["Key"]
            alphabet.update(*(item["Key"][len(prefix):] for item in contents))
            if pages >= self._pages_before_split and self._live < self._max_walks:
                await self._split(prefix, first, after, depth, frozenset(alphabet))
                return

    async def _split(self, prefix: str, first: str, after: str, depth: int,
                     alphabet: frozenset[str]) -> None:
        """Walk the keys under `prefix` that sort after `after`, in parallel: at each position
        j from the prefix to the first one where this walk's `first` key and `after` differ,
        the branches of `after[:j]` whose next character sorts after `after[j]`; and, in one
        walk, the keys after `after` that share its first d + 1 characters (deeper positions
        only cut ranges smaller than what this walk listed already)."""
        d = next((j for j, (a, b) in enumerate(zip(first, after, strict=False)) if a != b),
                 min(len(first), len(after)))
        d = min(max(d, len(prefix)), len(after) - 1)
        await asyncio.gather(
            self.walk(after[: d + 1], after, depth),
            *(self._other_branches(after[:j], after[: j + 1], depth, alphabet)
              for j in range(len(prefix), d + 1)))

    async def _other_branches(self, prefix: str, branch: str, depth: int,
                              alphabet: frozenset[str]) -> None:
        """Walk, in parallel, each branch of `prefix` that sorts after `branch`.

        One-key probes `StartAfter = prefix + c + U+10FFFF` each find the first branch after
        character c; they start from every character of `alphabet` (those seen in the listed
        keys) after `branch`, all at once, and follow on from each branch found that was not
        probed yet, so that branches outside the alphabet are found too (one more round each).
        """
        walked, walks = {branch}, []
        points = {prefix + c + _MAX_CHAR for c in alphabet if c > branch[-1]}
        points.add(branch + _MAX_CHAR)
        probed: set[str] = set()
        while points:
            probed |= points
            depth += 1
            self.stats.depth = max(self.stats.depth, depth)
            found = await asyncio.gather(*(self._list(prefix, p, 1) for p in sorted(points)))
            self.stats.probes += len(points)
            points = set()
            for contents, _ in found:
                if not contents:
                    continue
                key = contents[0]["Key"]
                branch = prefix + key[len(prefix)]
                if branch not in walked:
                    walked.add(branch)
                    walks.append(asyncio.ensure_future(self.walk(branch, None, depth)))
                skip = branch + _MAX_CHAR
                follow = key if key.startswith(skip) else skip  # a key past the skip marker
                if follow not in probed:
                    points.add(follow)
        await asyncio.gather(*walks)


def list_s3(fs: Any, path: str, extensions: tuple[str, ...], *,
            max_walks: int = _S3_MAX_WALKS, page_keys: int = _PAGE_KEYS,
            pages_before_split: int = _PAGES_BEFORE_SPLIT) -> tuple[pa.Table, ListingStats]:
    """`uri` (`s3://bucket/key`) and `size` of every object under the S3 prefix `path`
    ("bucket/prefix") whose lower-cased key ends with one of `extensions`; and the requests made.

    `max_walks` (1: one sequential walk), `page_keys` and `pages_before_split` tune the walk
    (see the module docstring); the defaults suit S3.
    """
    bucket, _, key = path.partition("/")
    if not bucket:
        raise ValueError(f"S3 source needs a bucket, got {path!r}; use s3://bucket/prefix")
    prefix = key.rstrip("/") + "/" if key else ""

    async def run() -> _S3Walker:
        walker = _S3Walker(fs, bucket, extensions, max_walks=max_walks, page_keys=page_keys,
                           pages_before_split=pages_before_split)
        await walker.walk(prefix)
        return walker

    walker = sync(fs.loop, run)
    logger.debug("listed s3://%s/%s: %s", bucket, prefix, walker.stats)
    return walker.found.table(), walker.stats
