"""Membership in millions of image ids, built once and asked many times (manifest batches).

Image ids are 20 hex characters, so the usual case is a sorted array of fixed-width bytes that
numpy searches (about 20 bytes per id, no hash table rebuilt per question as `pc.is_in` does);
ids of mixed widths fall back to `pc.is_in`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["IdSet"]


def _fixed_width(ids: pa.Array) -> np.ndarray | None:
    """The ids as a numpy `S<width>` array (a view of Arrow's data), or None when they are not
    all non-null strings of one width."""
    if len(ids) == 0 or ids.null_count or not pa.types.is_string(ids.type):
        return None
    lengths = pc.binary_length(ids)
    width = pc.max(lengths).as_py()
    if width == 0 or pc.min(lengths).as_py() != width:
        return None
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32)
    start, stop = offsets[ids.offset], offsets[ids.offset + len(ids)]
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[start:stop]
    return data.view(f"S{width}")


class IdSet:
    """A set of ids (an Arrow string array) to test other ids against, without Python objects."""

    def __init__(self, ids: pa.Array | pa.ChunkedArray) -> None:
        self._ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        fixed = _fixed_width(self._ids)
        self._sorted = np.sort(fixed) if fixed is not None else None
        self._width = fixed.dtype.itemsize if fixed is not None else 0

    def __len__(self) -> int:
        return len(self._ids)

    def contains(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """bool (len(ids),): which of `ids` are in the set."""
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        if len(self._ids) == 0 or len(ids) == 0:
            return np.zeros(len(ids), dtype=bool)
        query = _fixed_width(ids) if self._sorted is not None else None
        if query is None or query.dtype.itemsize != self._width:
            return pc.is_in(ids, value_set=self._ids).to_numpy(zero_copy_only=False)
        where = np.searchsorted(self._sorted, query)
        where[where == len(self._sorted)] = 0
        return self._sorted[where] == query

    def without(self, table: pa.Table) -> pa.Table:
        """The rows of `table` whose `image_id` is not in the set (order kept)."""
        return table.filter(pa.array(~self.contains(table["image_id"])))
