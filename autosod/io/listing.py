"""Fast recursive listing: `os.scandir` for local trees, prefix-parallel pages for S3."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from fsspec.asyn import sync

__all__ = ["list_local", "list_s3"]

logger = logging.getLogger(__name__)

_S3_PARALLEL_PREFIXES = 32


def list_local(root: str, extensions: tuple[str, ...]) -> list[tuple[str, int]]:
    """(absolute path, size in bytes) of every file under `root` whose lower-cased name ends
    with one of `extensions`; symlinked directories are not followed (no cycles). Names that
    are not valid UTF-8 cannot be stored as URIs: they are left out with a warning."""
    found: list[tuple[str, int]] = []
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
                    found.append((entry.path, entry.stat().st_size))
    if undecodable:
        logger.warning("left out %d files under %s whose names are not valid UTF-8; rename "
                       "them to include them", undecodable, root)
    return found


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _list_prefix(fs: Any, bucket: str, prefix: str, delimiter: str) -> list[dict]:
    """All entries of one paginated ListObjectsV2 walk (1,000 keys per request)."""
    return [info async for info in fs._iterdir(bucket, delimiter=delimiter, prefix=prefix)]


async def _list_s3_async(fs: Any, bucket: str, prefix: str) -> list[dict]:
    top = await _list_prefix(fs, bucket, prefix, delimiter="/")
    files = [info for info in top if info["type"] == "file"]
    subprefixes = [info["name"].split("/", 1)[1] + "/" for info in top if info["type"] != "file"]
    limit = asyncio.Semaphore(_S3_PARALLEL_PREFIXES)

    async def walk(sub: str) -> list[dict]:
        async with limit:
            return await _list_prefix(fs, bucket, sub, delimiter="")

    for chunk in await asyncio.gather(*(walk(sub) for sub in subprefixes)):
        files.extend(chunk)
    logger.debug("listed s3://%s/%s: %d keys, %d sub-prefixes in parallel",
                 bucket, prefix, len(files), len(subprefixes))
    return files


def list_s3(fs: Any, path: str, extensions: tuple[str, ...]) -> list[tuple[str, int]]:
    """("bucket/key", size) of every object under the S3 prefix `path` ("bucket/prefix").

    One delimited listing of the prefix finds its sub-prefixes, which are then listed
    concurrently (at most 32 at a time), each with paginated requests: the request count is
    about keys / 1000 plus the number of sub-prefixes, never one per object.
    """
    bucket, _, key = path.partition("/")
    if not bucket:
        raise ValueError(f"S3 source needs a bucket, got {path!r}; use s3://bucket/prefix")
    prefix = key.rstrip("/") + "/" if key else ""
    infos = sync(fs.loop, _list_s3_async, fs, bucket, prefix)
    return [
        (info["name"], int(info["size"]))
        for info in infos
        if info["type"] == "file" and info["name"].lower().endswith(extensions)
    ]
