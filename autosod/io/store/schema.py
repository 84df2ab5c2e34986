"""The row schema of the mask store, configuration hashes, and input normalisation.

Schema versions: 3 adds `objectness` (a trained network's score of its chosen mask, written by
prediction; null in labelling rows), which parts of versions 1 and 2 read as null. Version 2
names the per-image mask-quality score `mask_quality`; version 1 (stores written before
2026-12-02) called the same score `confidence`. Readers accept all three: a version-1 part's
`confidence` column is read as `mask_quality` (`file_schema`, `file_column`), so old stores need
no migration, and a run that resumes into one writes new parts beside the old ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from autosod.io.status import STATUSES

__all__ = [
    "READABLE_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
    "SCORE_COLUMNS",
    "STORE_SCHEMA",
    "config_differences",
    "config_hash",
    "file_column",
    "file_schema",
    "to_store_table",
]

SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
_RENAMED_IN_2 = {"mask_quality": "confidence"}  # version-2 name -> version-1 name
SCORE_COLUMNS = ("fg_fraction", "mean_entropy", "transport_cost", "mask_quality", "objectness")

STORE_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("width", pa.int32()),  # original (upright) size; 0 when unknown
        pa.field("height", pa.int32()),
        pa.field("status", pa.string(), nullable=False),  # "ok" or a reason (autosod.io.status)
        pa.field("error", pa.string()),  # "" when ok
        pa.field("mask_png", pa.binary()),  # 1-bit PNG at the original size; null on failure
        pa.field("saliency_png", pa.binary()),  # 8-bit PNG soft map; null on failure
        *(pa.field(name, pa.float32()) for name in SCORE_COLUMNS),
        pa.field("config_hash", pa.string()),
    ]
)
_REQUIRED = ("image_id", "uri", "status")


def file_column(name: str, version: int) -> str:
    """The name a `STORE_SCHEMA` column has in a part file of schema `version`."""
    return _RENAMED_IN_2.get(name, name) if version < 2 else name


def file_schema(version: int) -> pa.Schema:
    """The Arrow schema of part files written with schema `version`."""
    if version not in READABLE_SCHEMA_VERSIONS:
        raise ValueError(
            f"store part has schema version {version}; this autosod reads versions "
            f"{READABLE_SCHEMA_VERSIONS}; upgrade autosod"
        )
    names = [file_column(name, version) for name in STORE_SCHEMA.names]
    return pa.schema([f.with_name(n) for f, n in zip(STORE_SCHEMA, names, strict=True)])
_ARRAYS = (np.ndarray, pa.Array, pa.ChunkedArray)


def config_hash(config: Mapping[str, Any]) -> str:
    """First 16 hex chars of sha256 of the config as canonical JSON (sorted keys)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two configs, as `"key: old -> new"` (compared
    as canonical JSON, so a tuple equals the list a store read back)."""
    def plain(value: Any) -> Any:
        return json.loads(json.dumps(value, sort_keys=True, default=str))

    def walk(a: Any, b: Any, prefix: str) -> list[str]:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            return [line for key in sorted(set(a) | set(b), key=str)
                    for line in walk(a.get(key, "<unset>"), b.get(key, "<unset>"),
                                     f"{prefix}{key}.")]
        return [] if a == b else [f"{prefix[:-1]}: {a!r} -> {b!r}"]

    return walk(plain(dict(old)), plain(dict(new)), "")


def _as_table(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, Mapping):  # e.g. a Ray Data batch of numpy arrays
        return pa.table(
            {
                name: values if isinstance(values, _ARRAYS) else list(values)
                for name, values in data.items()
            }
        )
    if isinstance(data, Sequence) and all(isinstance(row, Mapping) for row in data):
        return pa.Table.from_pylist(list(data))
    raise TypeError(
        "store rows must be a pyarrow Table, a dict of columns (lists or numpy arrays) or a "
        "list of row dicts, "
        f"got {type(data).__name__}"
    )


def _fill_column(name: str, length: int, config_hash_value: str) -> pa.Array:
    field = STORE_SCHEMA.field(name)
    if name == "config_hash":
        return pa.array([config_hash_value] * length, pa.string())
    if name == "error":
        return pa.array([""] * length, pa.string())
    if name in ("width", "height"):
        return pa.array([0] * length, pa.int32())
    return pa.nulls(length, field.type)  # masks, and scores: null where a row has none


def _null_nan(scores: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.if_else(pc.is_nan(scores), pa.scalar(None, pa.float32()), scores)


def to_store_table(data: Any, *, config_hash: str) -> pa.Table:
    """Rows in any accepted form -> a table with exactly `STORE_SCHEMA`.

    Missing optional columns are filled (error "", sizes 0, scores and masks null, config_hash
    from the store). A score is null where a row has none (failed rows): NaN is never stored.
    Raises ValueError on missing required columns, unknown statuses, null or duplicate image
    ids, or columns the schema does not have.
    """
    table = _as_table(data)
    extra = sorted(set(table.column_names) - set(STORE_SCHEMA.names))
    missing = [name for name in _REQUIRED if name not in table.column_names]
    if extra or missing:
        raise ValueError(
            f"store rows have unknown columns {extra} / lack required columns {missing}; "
            f"allowed columns are {STORE_SCHEMA.names}"
        )
    columns = []
    for name in STORE_SCHEMA.names:
        if name in SCORE_COLUMNS and name in table.column_names:
            columns.append(_null_nan(table[name].cast(pa.float32())))
        elif name in table.column_names:
            columns.append(table[name].cast(STORE_SCHEMA.field(name).type))
        else:
            columns.append(_fill_column(name, table.num_rows, config_hash))
    table = pa.table(columns, schema=STORE_SCHEMA.remove_metadata())
    if table["image_id"].null_count or table["status"].null_count:
        raise ValueError("store rows need a non-null image_id and status in every row")
    unknown = set(pc.unique(table["status"]).to_pylist()) - STATUSES
    if unknown:
        raise ValueError(f"unknown statuses {sorted(unknown)}; use one of {sorted(STATUSES)}")
    if pc.count_distinct(table["image_id"]).as_py() != table.num_rows:
        raise ValueError("duplicate image_id within one part; each image must appear once")
    return table.cast(STORE_SCHEMA)
