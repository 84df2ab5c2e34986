"""Reading committed parts of the mask store: whole-dataset scans on local disk, one GET per
part (fetched concurrently) on object stores, and the newest-copy-wins filter."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from autosod.io.filesystem import is_local
from autosod.io.store.commit_log import Commit
from autosod.io.store.schema import STORE_SCHEMA

__all__ = ["iter_part_batches", "read_parts"]

_FETCH_CHUNK = 16  # parts fetched concurrently from an object store

Plan = list[tuple[Commit, set[str]]]  # each committed part with the ids a newer part replaces


def _drop(table: pa.Table, excluded: set[str], columns: list[str]) -> pa.Table:
    if excluded:
        keep = pc.invert(pc.is_in(table["image_id"], value_set=pa.array(sorted(excluded))))
        table = table.filter(keep)
    return table.select(columns)


def _wanted(columns: list[str], excluded: set[str]) -> list[str]:
    return columns if "image_id" in columns or not excluded else [*columns, "image_id"]


def _local_tables(root: str, plan: Plan, columns: list[str], batch_size: int | None) -> Iterator:
    """Parts without replaced rows in one threaded dataset scan (one table when `batch_size`
    is None), then the others one by one with their stale rows dropped."""
    clean = [posixpath.join(root, c.data) for c, excluded in plan if not excluded]
    if clean:
        dataset = pads.dataset(clean, schema=STORE_SCHEMA, format="parquet")
        if batch_size is None:
            yield dataset.to_table(columns=columns)
        else:
            for batch in dataset.to_batches(columns=columns, batch_size=batch_size):
                yield pa.Table.from_batches([batch], schema=batch.schema)
    for commit, excluded in plan:
        if excluded:
            path = posixpath.join(root, commit.data)
            table = pq.read_table(path, columns=_wanted(columns, excluded), schema=STORE_SCHEMA)
            yield _drop(table, excluded, columns)


def _remote_tables(fs: Any, root: str, plan: Plan, columns: list[str]) -> Iterator[pa.Table]:
    for start in range(0, len(plan), _FETCH_CHUNK):
        chunk = plan[start : start + _FETCH_CHUNK]
        paths = [posixpath.join(root, commit.data) for commit, _ in chunk]
        blobs = fs.cat(paths)  # concurrent whole-object GETs; a missing part raises
        for (_, excluded), path in zip(chunk, paths, strict=True):
            blob = blobs.get(path) or blobs[fs._strip_protocol(path)]
            reader = pa.BufferReader(blob)
            table = pq.read_table(reader, columns=_wanted(columns, excluded), schema=STORE_SCHEMA)
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
