"""`IdSet` answers membership like a Python set, on the fixed-width fast path and off it."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from autosod.io.store.id_set import IdSet


def _hex(values: range) -> list[str]:
    return [hashlib.sha1(str(v).encode()).hexdigest()[:20] for v in values]


def test_membership_matches_a_python_set() -> None:
    members = _hex(range(0, 3000, 3))
    table = pa.chunked_array([members[:400], members[400:]])  # chunked, as a log's ids are
    queries = pa.array(_hex(range(0, 1500)))
    expected = np.array([q in set(members) for q in queries.to_pylist()])
    ids = IdSet(table)
    assert len(ids) == len(members)
    np.testing.assert_array_equal(ids.contains(queries), expected)
    sliced = queries.slice(7, 300)  # an Arrow slice: its data starts at an offset
    np.testing.assert_array_equal(ids.contains(sliced), expected[7:307])
    kept = ids.without(pa.table({"image_id": queries, "n": np.arange(1500)}))
    assert kept["n"].to_pylist() == np.flatnonzero(~expected).tolist()


def test_ids_of_other_widths_and_empty_sets() -> None:
    mixed = IdSet(pa.array(["img-0001", "img-12", "a"]))
    np.testing.assert_array_equal(mixed.contains(pa.array(["img-12", "img-0002", "a", "b"])),
                                  [True, False, True, False])
    fixed = IdSet(pa.array(_hex(range(10))))
    queries = pa.array([*_hex(range(5, 15)), "short", "x" * 25])  # not all of its width
    np.testing.assert_array_equal(fixed.contains(queries), [True] * 5 + [False] * 7)
    assert not IdSet(pa.array([], pa.string())).contains(pa.array(["a"])).any()
    assert IdSet(pa.array(["a"])).contains(pa.array([], pa.string())).shape == (0,)
