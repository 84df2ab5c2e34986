"""The run's data on Ray Data: store parts -> ok rows -> decoded, shrunk images in the object store.

Map tasks read each committed part of each store (`store.parts()`; rows never pass through the
driver), keep the ok rows that pass `--min-quality`, read and decode each row's image, and
shrink it to the cache side (`TrainJobConfig.cache_side`) with its soft pseudo-mask. The
decoded blocks stay in Ray's object store for the whole run (every epoch augments them anew);
the driver keeps only their references and a small index (image id, block, row, weight,
split), from which each worker draws its samples (autosod.training.sampling).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from autosod.io.status import OK
from autosod.io.store.mask_store import MaskStore, StorePart
from autosod.training.data import STORE_COLUMNS, part_rows, prepare_rows
from autosod.training.job_config import TrainJobConfig

__all__ = ["DUPLICATE", "PreparedData", "prepare_data"]

logger = logging.getLogger(__name__)

DUPLICATE = "duplicate"  # an image id already taken from an earlier store of the command line
_ROWS_PER_TASK = 16
_MAX_ERROR_SAMPLES = 5
_INDEX_COLUMNS = ("image_id", "store", "status", "error", "weight", "is_val")


@dataclass
class PreparedData:
    """The cached blocks (ObjectRefs of Arrow tables) and the index of their usable rows."""

    blocks: list[Any]
    train: dict[str, np.ndarray]  # block, row, image_id, weight; sorted by image_id
    val: dict[str, np.ndarray]
    counts: dict[str, int] = field(default_factory=dict)  # candidate rows by status
    error_samples: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0


def _read_parts(batch: dict[str, np.ndarray], *, parts: list[tuple[int, MaskStore, StorePart]],
                config: Any, val_fraction: float) -> dict[str, np.ndarray]:
    """One task per part: its committed rows -> `part_rows` columns."""
    tables = []
    for task in batch["task"]:
        store_index, store, part = parts[int(task)]
        table = store.read_part(part, STORE_COLUMNS)
        tables.append(part_rows(table, store_index=store_index, config=config,
                                val_fraction=val_fraction))
    return {key: np.concatenate([t[key] for t in tables]) for key in tables[0]}


@ray.remote(num_cpus=0)
def _block_index(table: pa.Table) -> dict[str, np.ndarray]:
    """The small columns of one cached block (what the driver indexes)."""
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in _INDEX_COLUMNS}


def _dataset(stores: list[MaskStore], config: TrainJobConfig) -> ray.data.Dataset:
    parts = [(i, store, part) for i, store in enumerate(stores) for part in store.parts()]
    ds = ray.data.from_items([{"task": k} for k in range(len(parts))],
                             override_num_blocks=max(1, len(parts)))
    ds = ds.map_batches(_read_parts, batch_size=1, batch_format="numpy", num_cpus=0.5,
                        fn_kwargs={"parts": parts, "config": config.train,
                                   "val_fraction": config.val_fraction})
    ds = ds.repartition(target_num_rows_per_block=_ROWS_PER_TASK)  # decode parts in parallel
    return ds.map_batches(prepare_rows, batch_size=_ROWS_PER_TASK, batch_format="numpy",
                          num_cpus=1,
                          fn_kwargs={"side_px": config.cache_side, "max_pixels": config.max_pixels,
                                     "storage_options": config.storage_options})


def _index(blocks: list[Any]) -> dict[str, np.ndarray]:
    """All cached rows' index columns with their block and row numbers."""
    metas = ray.get([_block_index.remote(ref) for ref in blocks])
    columns: dict[str, list[np.ndarray]] = {k: [] for k in (*_INDEX_COLUMNS, "block", "row")}
    for block, meta in enumerate(metas):
        count = len(meta["image_id"])
        for key in _INDEX_COLUMNS:
            columns[key].append(np.asarray(meta[key]))
        columns["block"].append(np.full(count, block, np.int64))
        columns["row"].append(np.arange(count, dtype=np.int64))
    return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in columns.items()}


def _split(index: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                  np.ndarray]:
    """Deduplicated by image id (the earliest store wins); train and validation rows."""
    ids = index["image_id"].astype(str)
    order = np.lexsort((index["row"], index["block"], index["store"], ids))
    first = np.ones(len(order), bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    status = index["status"].astype(object).copy()
    status[order[~first]] = DUPLICATE
    usable = order[first & (status[order] == OK)]  # sorted by image id
    keys = ("block", "row", "image_id", "weight")

    def rows(mask: np.ndarray) -> dict[str, np.ndarray]:
        chosen = usable[mask]
        return {k: index[k][chosen] for k in keys}

    is_val = index["is_val"][usable].astype(bool)
    return rows(~is_val), rows(is_val), status


def prepare_data(stores: list[MaskStore], config: TrainJobConfig) -> PreparedData:
    """Run the preparation pipeline; the decoded blocks stay in the object store."""
    start = time.perf_counter()
    blocks = _dataset(stores, config).to_arrow_refs()
    index = _index(blocks)
    train, val, status = _split(index)
    counts = dict(sorted(Counter(str(s) for s in status).items()))
    samples: dict[str, list[str]] = {}
    for state, error in zip(status, index["error"], strict=True):
        if state not in (OK, DUPLICATE) and error:
            found = samples.setdefault(str(state), [])
            if len(found) < _MAX_ERROR_SAMPLES:
                found.append(str(error))
    seconds = time.perf_counter() - start
    logger.info("prepared %d rows in %.1f s: %s; %d train, %d validation", len(status), seconds,
                counts, len(train["image_id"]), len(val["image_id"]))
    return PreparedData(blocks=blocks, train=train, val=val, counts=counts,
                        error_samples=samples, seconds=seconds)
