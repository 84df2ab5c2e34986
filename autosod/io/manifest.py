"""Manifests: one Parquet table of the images a job reads (`image_id`, `uri`, `size`, `shard`).

Listing happens once (`build_manifest`) and the table is saved with the run, so reruns and
workers never list again. Sources: a local directory, a glob, `s3://bucket/prefix`, a text file
of URIs (one per line), or an existing manifest (`.parquet`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autosod.io.filesystem import canonical_uri, is_local, open_filesystem, put_atomic
from autosod.io.listing import LISTING_SCHEMA, list_local, list_s3

__all__ = [
    "DEFAULT_EXTENSIONS",
    "DEFAULT_SHARD_SIZE",
    "MANIFEST_SCHEMA",
    "build_manifest",
    "image_id_for",
    "load_manifest",
    "manifest_from_listing",
    "manifest_from_uris",
    "read_manifest",
    "save_manifest",
    "validate_manifest",
    "write_manifest",
]

logger = logging.getLogger(__name__)

DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
DEFAULT_SHARD_SIZE = 1000
_ID_HEX_CHARS = 20
_ID_CHUNK = 65_536
_GLOB_CHARS = "*?["

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("size", pa.int64()),  # bytes; null when unknown (remote URIs from a text list)
        pa.field("shard", pa.int32(), nullable=False),
    ]
)


def image_id_for(uri: str) -> str:
    """Stable id of an image: the first 20 hex chars of sha1 of its canonical URI."""
    return hashlib.sha1(canonical_uri(uri).encode("utf-8")).hexdigest()[:_ID_HEX_CHARS]


def _normalise_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    exts = tuple("." + e.lower().lstrip(".") for e in extensions)
    if not exts:
        raise ValueError("extensions is empty; pass image suffixes such as ('.jpg', '.png')")
    return exts


def manifest_from_uris(
    uris: Iterable[str],
    sizes: Iterable[int | None] | None = None,
    *,
    shard_size: int,
    canonical: bool = False,
) -> pa.Table:
    """Manifest for the given URIs: canonicalised, de-duplicated, sorted, cut into shards.

    Shards are contiguous runs of `shard_size` rows in sorted-URI order. `canonical=True`
    promises that the URIs already are `canonical_uri` spellings (skips that step).
    """
    uri_list = list(uris) if canonical else [canonical_uri(uri) for uri in uris]
    size_list = list(sizes) if sizes is not None else [None] * len(uri_list)
    listing = pa.table({"uri": pa.array(uri_list, pa.string()),
                        "size": pa.array(size_list, pa.int64())}, schema=LISTING_SCHEMA)
    return manifest_from_listing(listing, shard_size=shard_size)


def _ids_for(uris: pa.Array) -> pa.Array:
    """`image_id_for` of canonical URIs, a chunk at a time (no list of all of them)."""
    chunks = [pa.array([], pa.string())]
    for start in range(0, len(uris), _ID_CHUNK):
        part = uris.slice(start, _ID_CHUNK).to_pylist()
        chunks.append(pa.array([hashlib.sha1(u.encode("utf-8")).hexdigest()[:_ID_HEX_CHARS]
                                for u in part], pa.string()))
    return pa.concat_arrays(chunks)


def manifest_from_listing(listing: pa.Table, *, shard_size: int) -> pa.Table:
    """Manifest of a listing table (`uri` canonical, `size`): sorted by URI, de-duplicated (the
    last size listed wins), ids, shards of `shard_size` contiguous rows."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    table = listing.select(["uri", "size"]).sort_by("uri")
    uris = table["uri"].combine_chunks()
    if len(uris) > 1:
        last_copy = pc.not_equal(uris.slice(0, len(uris) - 1), uris.slice(1))
        keep = pa.concat_arrays([last_copy, pa.array([True])])
        if not pc.all(keep).as_py():
            table = table.filter(keep)
            uris = table["uri"].combine_chunks()
    shards = np.arange(table.num_rows, dtype=np.int64) // shard_size
    return pa.table(
        {
            "image_id": _ids_for(uris),
            "uri": uris,
            "size": table["size"].combine_chunks(),
            "shard": pa.array(shards.astype(np.int32)),
        },
        schema=MANIFEST_SCHEMA,
    )


def _read_uri_list(fs: Any, path: str) -> list[str]:
    """Non-empty, non-comment lines of a text file of URIs."""
    text = fs.cat_file(path).decode("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _uri_list_sizes(uris: list[str]) -> list[int | None]:
    """Sizes of local files (a cheap stat); None for remote objects (no request per object)."""
    sizes: list[int | None] = []
    for uri in uris:
        if uri.startswith("s3://") or ("://" in uri and not uri.startswith("file://")):
            sizes.append(None)
            continue
        try:
            sizes.append(os.stat(canonical_uri(uri)[len("file://") :]).st_size)
        except OSError:
            sizes.append(None)  # the decode stage reports it as read_error
    return sizes


def _list_source(fs: Any, path: str, source: str, exts: tuple[str, ...]) -> pa.Table:
    """`uri` (canonical) and `size` (or null) of each image in a glob, prefix, folder or list."""
    remote = not is_local(fs)
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
    scheme = f"{protocol}://" if remote else "file://"
    if any(ch in path for ch in _GLOB_CHARS):
        found = fs.glob(path, detail=True)
        items = [(scheme + name, info.get("size")) for name, info in found.items()
                 if info.get("type") == "file" and name.lower().endswith(exts)]
    elif fs.isfile(path):
        if path.lower().endswith(exts):
            items = [(scheme + path, fs.size(path))]
        else:
            uris = [canonical_uri(uri) for uri in _read_uri_list(fs, path)]
            items = list(zip(uris, _uri_list_sizes(uris), strict=True))
    elif remote:
        table, stats = list_s3(fs, path, exts)
        logger.info("listed %s: %d keys in %d pages + %d probes over %d key ranges", source,
                    stats.keys, stats.pages, stats.probes, stats.walks)
        return table
    elif not os.path.isdir(path):
        raise FileNotFoundError(
            f"manifest source {source!r} is not a directory, file, glob or s3:// prefix; "
            "check the path"
        )
    else:
        return list_local(path, exts)
    return pa.table({"uri": pa.array([u for u, _ in items], pa.string()),
                     "size": pa.array([n for _, n in items], pa.int64())}, schema=LISTING_SCHEMA)


def build_manifest(
    source: str,
    *,
    storage_options: dict[str, Any] | None = None,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> pa.Table:
    """List `source` once into a manifest table (`MANIFEST_SCHEMA`).

    `source`: a directory (recursive), a glob (`/data/**/*.jpg`, `s3://b/p/*.png`), an S3
    prefix, a text file of URIs (one per line, `#` comments), or an existing manifest
    (`.parquet`, returned re-validated). Image files are recognised by extension,
    case-insensitively. S3 prefixes are listed with paginated `ListObjectsV2` calls over key
    ranges walked in parallel (`listing.list_s3`), never one request per object.
    """
    exts = _normalise_extensions(extensions)
    fs, path = open_filesystem(source, storage_options)
    if source.endswith(".parquet") and fs.isfile(path):
        return load_manifest(source, storage_options=storage_options)
    listing = _list_source(fs, path, source, exts)
    if listing.num_rows == 0:
        logger.warning("no images with extensions %s found in %s", exts, source)
    table = manifest_from_listing(listing, shard_size=shard_size)
    logger.info("manifest of %s: %d images, shard size %d", source, table.num_rows, shard_size)
    return table


def save_manifest(
    table: pa.Table, uri: str, *, storage_options: dict[str, Any] | None = None
) -> None:
    """Write a manifest as one Parquet file (atomically: temp file, then rename or copy)."""
    fs, path = open_filesystem(uri, storage_options)
    write_manifest(fs, path, table)


def load_manifest(uri: str, *, storage_options: dict[str, Any] | None = None) -> pa.Table:
    """Read a manifest saved by `save_manifest`; raises ValueError when columns are missing."""
    fs, path = open_filesystem(uri, storage_options)
    return read_manifest(fs, path, where=uri)


def write_manifest(fs: Any, path: str, table: pa.Table) -> None:
    """Validate `table` and write it to `path` on `fs` as one Parquet file, atomically."""
    table = validate_manifest(table, "the manifest to save")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    put_atomic(fs, path, sink.getvalue().to_pybytes())


def read_manifest(fs: Any, path: str, *, where: str) -> pa.Table:
    """The manifest at `path` on `fs`; ValueError naming `where` if it is not one."""
    with fs.open(path, "rb") as handle:
        return validate_manifest(pq.read_table(handle), where)


def validate_manifest(table: pa.Table, where: str) -> pa.Table:
    """`table` with exactly `MANIFEST_SCHEMA`'s columns, its schema metadata kept (the store
    records the listed source there); ValueError naming `where` if columns are missing."""
    missing = [n for n in MANIFEST_SCHEMA.names if n not in table.column_names]
    if missing:
        raise ValueError(
            f"{where} is not a manifest: columns {missing} are missing (has "
            f"{table.column_names}); build one with autosod.io.build_manifest"
        )
    schema = MANIFEST_SCHEMA.with_metadata(table.schema.metadata)
    return table.select(MANIFEST_SCHEMA.names).cast(schema)
