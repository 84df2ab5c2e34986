"""Reading committed parts of the mask store: whole-dataset scans on local disk, one GET per
part (fetched concurrently, retried with backoff) on object stores, and the newest-copy filter.

Parts of older schema versions are read under today's column names (`schema.file_column`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from itertools import groupby
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autosod.io.filesystem import is_local
from autosod.io.store.fetch import fetch_parsed
from autosod.io.store.log_state import StorePart
from autosod.io.store.schema import STORE_SCHEMA, file_column, file_schema

__all__ = ["iter_part_batches", "read_parts", "without_ids"]

_FETCH_CHUNK = 16  # parts fetched concurrently from an object store

Plan = list[StorePart]  # the committed parts, each with the ids to keep when not all


def without_ids(table: pa.Table, ids: set[str] | frozenset[str] | pa.Array | pa.ChunkedArray
                ) -> pa.Table:
    """The rows of `table` whose `image_id` is not in `ids` (order kept)."""
    if len(ids) == 0:
        return table
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    value_set = ids if isinstance(ids, pa.Array) else pa.array(sorted(ids), pa.string())
    return table.filter(pc.invert(pc.is_in(table["image_id"], value_set=value_set)))


def _keep(table: pa.Table, part: StorePart, columns: list[str]) -> pa.Table:
    if part.keep is not None:
        value_set = pa.array(part.keep, pa.string())
        table = table.filter(pc.is_in(table["image_id"], value_set=value_set))
    return table.select(columns)


def _wanted(columns: list[str], part: StorePart) -> list[str]:
    return columns if "image_id" in columns or part.keep is None else [*columns, "image_id"]


def _read_file(source: Any, columns: list[str], version: int) -> pa.Table:
    """One part file (path or buffer) with `columns` under today's names."""
    table = pq.read_table(source, columns=[file_column(c, version) for c in columns],
                          schema=file_schema(version))
    return table.rename_columns(columns)


def _local_tables(root: str, plan: Plan, columns: list[str], batch_size: int | None) -> Iterator:
    """Parts without replaced rows in one threaded dataset scan per schema version (one table
    when `batch_size` is None), then the others one by one with their stale rows dropped."""
    import pyarrow.dataset as pads  # loads pandas: only where a dataset scan happens

    clean = sorted((p.schema_version, posixpath.join(root, p.data)) for p in plan
                   if p.keep is None)
    for version, group in groupby(clean, key=lambda item: item[0]):
        paths = [path for _, path in group]
        dataset = pads.dataset(paths, schema=file_schema(version), format="parquet")
        projection = {name: pc.field(file_column(name, version)) for name in columns}
        if batch_size is None:
            yield dataset.to_table(columns=projection)
        else:
            for batch in dataset.to_batches(columns=projection, batch_size=batch_size):
                yield pa.Table.from_batches([batch], schema=batch.schema)
    for part in plan:
        if part.keep is not None:
            path = posixpath.join(root, part.data)
            table = _read_file(path, _wanted(columns, part), part.schema_version)
            yield _keep(table, part, columns)


def _fetch_parts(fs: Any, paths: list[str]) -> dict[str, bytes]:
    """Whole-object GETs of committed parts, retried; a part that cannot be read raises."""
    fetched = fetch_parsed(fs, paths, bytes, what="store parts")
    for path in fetched.missing:
        raise FileNotFoundError(f"committed store part {path} is missing: the store is damaged "
                                "(a data file was deleted behind its commit record)")
    for path, exc in fetched.failed.items():
        raise OSError(f"committed store part {path} cannot be read after {fetched.attempts} "
                      f"attempts: {type(exc).__name__}: {exc}") from exc
    return fetched.parsed


def _remote_tables(fs: Any, root: str, plan: Plan, columns: list[str]) -> Iterator[pa.Table]:
    for start in range(0, len(plan), _FETCH_CHUNK):
        chunk = plan[start : start + _FETCH_CHUNK]
        paths = [posixpath.join(root, part.data) for part in chunk]
        blobs = _fetch_parts(fs, paths)  # concurrent whole-object GETs
        for part, path in zip(chunk, paths, strict=True):
            table = _read_file(pa.BufferReader(blobs[path]), _wanted(columns, part),
                               part.schema_version)
            yield _keep(table, part, columns)


def _tables(
    fs: Any, root: str, plan: Plan, columns: list[str], batch_size: int | None
) -> Iterator[pa.Table]:
    if is_local(fs):
        return _local_tables(root, plan, columns, batch_size)
    return _remote_tables(fs, root, plan, columns)


def read_parts(fs: Any, root: str, plan: Plan, columns: list[str]) -> pa.Table:
    """All rows of the planned parts (row order unspecified) with the given columns."""
    tables = list(_tables(fs, root, plan, columns, batch_size=None))
    if not tables:
        return STORE_SCHEMA.empty_table().select(columns)
    return pa.concat_tables(tables)


def iter_part_batches(
    fs: Any, root: str, plan: Plan, columns: list[str], batch_size: int
) -> Iterator[pa.RecordBatch]:
    """The rows of the planned parts as record batches of at most `batch_size` rows."""
    for table in _tables(fs, root, plan, columns, batch_size):
        yield from table.to_batches(max_chunksize=batch_size)
