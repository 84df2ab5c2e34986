"""What the commit log says, as Arrow: every committed part, and the newest copy of each id.

`CommitLog` is a snapshot read once (`log_reader.read_log`) and then asked questions: which
ids are committed or done, counts by status, which parts a distributed reader reads (and which
rows of them), which data files are committed. Ids stay in Arrow arrays (no Python set of ten
million strings); `committed_ids()` gives a Python set for small stores and tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from autosod.io.status import RETRYABLE_STATUSES
from autosod.io.store.commit_log import PartRef

__all__ = ["ROWS_SCHEMA", "CommitLog", "Source", "StorePart", "assemble"]

ROWS_SCHEMA = pa.schema([
    pa.field("image_id", pa.string()),
    pa.field("status", pa.string()),
    pa.field("part", pa.int32()),  # index into the parts list
])


@dataclass(frozen=True)
class StorePart:
    """One committed part for a distributed reader (small and picklable): its file, schema
    version, row count and, when newer parts replace some of its rows, the ids to keep."""

    data: str
    schema_version: int
    rows: int
    keep: tuple[str, ...] | None = None  # None: every row of the file is visible

    def to_item(self) -> dict:
        """The part as one row of plain values (a Ray Data item: each task gets its own).

        `keep` travels as JSON text ("" for None): a column of nulls would reach a numpy
        batch as NaN."""
        keep = "" if self.keep is None else json.dumps(list(self.keep))
        return {"data": self.data, "schema_version": self.schema_version, "rows": self.rows,
                "keep": keep}

    @classmethod
    def from_item(cls, item: dict) -> StorePart:
        """Inverse of `to_item` (also for numpy values out of a Ray Data batch)."""
        keep = str(item["keep"])
        return cls(data=str(item["data"]), schema_version=int(item["schema_version"]),
                   rows=int(item["rows"]), keep=tuple(json.loads(keep)) if keep else None)


@dataclass(frozen=True)
class Source:
    """Rows (`ROWS_SCHEMA`, `part` indexing `parts`) from one compacted file or from records."""

    parts: list[PartRef]
    rows: pa.Table
    unique: bool  # every image_id appears once (true of a compacted file)


@dataclass(frozen=True, eq=False)
class CommitLog:
    """A snapshot of the commit log: parts oldest first and the newest copy of each id.

    `record_versions` (record name -> version as listed) / `compacted_files`: the files (in
    `commits/`) it was read from.
    """

    parts: tuple[PartRef, ...]
    rows: pa.Table  # ROWS_SCHEMA: one row per committed image id (its newest copy)
    record_versions: Mapping[str, str] = field(default_factory=dict)
    compacted_files: frozenset[str] = frozenset()

    @property
    def record_files(self) -> frozenset[str]:
        """Names of the commit records it was read from."""
        return frozenset(self.record_versions)

    @property
    def num_ids(self) -> int:
        return self.rows.num_rows

    def ids(self) -> pa.ChunkedArray:
        """Every committed image id, once."""
        return self.rows["image_id"]

    def committed_ids(self) -> set[str]:
        """The committed ids as a Python set (for small stores; use `ids()` at scale)."""
        return set(self.rows["image_id"].to_pylist())

    def done_ids(self, *, retry_failed: bool) -> pa.ChunkedArray:
        """Ids a run skips: all committed ids, or without those whose newest row failed with a
        retryable status (`read_error`, `model_error`) when `retry_failed`."""
        if not retry_failed:
            return self.ids()
        retry = pc.is_in(self.rows["status"], value_set=pa.array(sorted(RETRYABLE_STATUSES)))
        return self.rows.filter(pc.invert(retry))["image_id"]

    def status_counts(self) -> dict[str, int]:
        """Number of committed ids per status of their newest row."""
        counts = pc.value_counts(self.rows["status"]).to_pylist()
        return dict(sorted((item["values"], item["counts"]) for item in counts))

    def data_paths(self) -> set[str]:
        """Data files (relative to the store root) that any committed part names."""
        return {part.data for part in self.parts}

    def store_parts(self) -> list[StorePart]:
        """The parts a reader reads, oldest first; together they hold every visible row once."""
        visible = np.bincount(self.rows["part"].to_numpy(), minlength=len(self.parts))
        partial = [i for i, part in enumerate(self.parts) if 0 < visible[i] < part.rows]
        keep = _ids_by_part(self.rows, partial)
        return [StorePart(part.data, part.schema_version, part.rows, keep.get(i))
                for i, part in enumerate(self.parts) if visible[i]]


def _ids_by_part(rows: pa.Table, parts: list[int]) -> dict[int, tuple[str, ...]]:
    """For each of `parts`, the ids whose newest copy it holds."""
    if not parts:
        return {}
    chosen = rows.filter(pc.is_in(rows["part"], value_set=pa.array(parts, pa.int32())))
    chosen = chosen.sort_by("part")
    numbers = chosen["part"].to_numpy()
    ids = chosen["image_id"].to_pylist()
    bounds = np.flatnonzero(np.diff(numbers)) + 1
    out: dict[int, tuple[str, ...]] = {}
    for start, stop in zip([0, *bounds], [*bounds, len(ids)], strict=True):
        out[int(numbers[start])] = tuple(ids[start:stop])
    return out


def _newest(table: pa.Table) -> pa.Table:
    """One row per image id: the one from the newest part (the highest part index)."""
    if table.num_rows == 0 or pc.count_distinct(table["image_id"]).as_py() == table.num_rows:
        return table
    ordered = table.sort_by([("image_id", "ascending"), ("part", "descending")])
    ids = ordered["image_id"].combine_chunks()
    changed = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
    first = pa.concat_arrays([pa.array([True]), changed])
    return ordered.filter(first)


def _newest_over_unique(big: pa.Table, small: pa.Table) -> pa.Table:
    """`_newest` of big + small when big's ids are unique: only ids in small are contested."""
    if small.num_rows == 0:
        return big
    contested = pc.is_in(big["image_id"], value_set=small["image_id"].combine_chunks())
    resolved = _newest(pa.concat_tables([big.filter(contested), small]))
    return pa.concat_tables([big.filter(pc.invert(contested)), resolved])


def assemble(sources: list[Source], *, record_versions: Mapping[str, str] | None = None,
             compacted_files: frozenset[str] = frozenset()) -> CommitLog:
    """One `CommitLog` from several sources; a part met twice (same record name and commit
    time) counts once, and the newest copy of each id wins."""
    unique_parts = {(p.name, p.committed_at_ns): p for s in sources for p in s.parts}
    parts = sorted(unique_parts.values(), key=lambda p: p.order)
    index = {(p.name, p.committed_at_ns): i for i, p in enumerate(parts)}
    big, small = [], []
    for source in sources:
        mapping = pa.array([index[(p.name, p.committed_at_ns)] for p in source.parts], pa.int32())
        rows = source.rows.select(["image_id", "status"]).append_column(
            "part", pc.take(mapping, source.rows["part"]))
        (big if source.unique else small).append(rows)
    small_rows = pa.concat_tables(small) if small else ROWS_SCHEMA.empty_table()
    if len(big) == 1:
        rows = _newest_over_unique(big[0], small_rows)
    else:
        rows = _newest(pa.concat_tables([*big, small_rows]))
    return CommitLog(parts=tuple(parts), rows=rows.cast(ROWS_SCHEMA),
                     record_versions=dict(record_versions or {}),
                     compacted_files=compacted_files)
