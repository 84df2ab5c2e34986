"""Reading committed parts of the mask store: whole-dataset scans on local disk, one GET per
part (fetched concurrently) on object stores, and the newest-copy-wins filter.

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
from autosod.io.store.commit_log import Commit
from autosod.io.store.schema import STORE_SCHEMA, file_column, file_schema

__all__ = ["iter_part_batches", "read_parts", "without_ids"]

_FETCH_CHUNK = 16  # parts fetched concurrently from an object store

Plan = list[tuple[Commit, set[str]]]  # each committed part with the ids a newer part replaces


def without_ids(table: pa.Table, ids: set[str] | frozenset[str]) -> pa.Table:
    """The rows of `table` whose `image_id` is not in `ids` (order kept)."""
    if not ids:
        return table
    value_set = pa.array(sorted(ids), pa.string())
    return table.filter(pc.invert(pc.is_in(table["image_id"], value_set=value_set)))


def _drop(table: pa.Table, excluded: set[str], columns: list[str]) -> pa.Table:
    return without_ids(table, excluded).select(columns)


def _wanted(columns: list[str], excluded: set[str]) -> list[str]:
    return columns if "image_id" in columns or not excluded else [*columns, "image_id"]


def _read_file(source: Any, columns: list[str], version: int) -> pa.Table:
    """One part file (path or buffer) with `columns` under today's names."""
    table = pq.read_table(source, columns=[file_column(c, version) for c in columns],
                          schema=file_schema(version))
    return table.rename_columns(columns)


def _local_tables(root: str, plan: Plan, columns: list[str], batch_size: int | None) -> Iterator:
    """Parts without replaced rows in one threaded dataset scan per schema version (one table
    when `batch_size` is None), then the others one by one with their stale rows dropped."""
    import pyarrow.dataset as pads  # loads pandas: only where a dataset scan happens

    clean = sorted((c.schema_version, posixpath.join(root, c.data)) for c, ex in plan if not ex)
    for version, group in groupby(clean, key=lambda item: item[0]):
        paths = [path for _, path in group]
        dataset = pads.dataset(paths, schema=file_schema(version), format="parquet")
        projection = {name: pc.field(file_column(name, version)) for name in columns}
        if batch_size is None:
            yield dataset.to_table(columns=projection)
        else:
            for batch in dataset.to_batches(columns=projection, batch_size=batch_size):
                yield pa.Table.from_batches([batch], schema=batch.schema)
    for commit, excluded in plan:
        if excluded:
            path = posixpath.join(root, commit.data)
            table = _read_file(path, _wanted(columns, excluded), commit.schema_version)
            yield _drop(table, excluded, columns)


def _remote_tables(fs: Any, root: str, plan: Plan, columns: list[str]) -> Iterator[pa.Table]:
    for start in range(0, len(plan), _FETCH_CHUNK):
        chunk = plan[start : start + _FETCH_CHUNK]
        paths = [posixpath.join(root, commit.data) for commit, _ in chunk]
        blobs = fs.cat(paths)  # concurrent whole-object GETs; a missing part raises
        for (commit, excluded), path in zip(chunk, paths, strict=True):
            blob = blobs.get(path) or blobs[fs._strip_protocol(path)]
            table = _read_file(pa.BufferReader(blob), _wanted(columns, excluded),
                               commit.schema_version)
            yield _drop(table, excluded, columns)


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
