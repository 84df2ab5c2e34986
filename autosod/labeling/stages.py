"""The three stages of the labelling job as plain callables on columnar batches (no Ray here).

`job.py` runs them inside Ray Data: `decode_batch` in CPU tasks, `actor.LabelStage` in the
POTNet actor pool, `encode_batch` in CPU tasks, `write_batch` in writer tasks. Each can be tested
on a hand-made dict batch.

Batch columns (numpy arrays of length B):
- manifest rows: `image_id`, `uri`, `shard`.
- after decode: + `width`, `height`, `status`, `error`, `image` (B, S, S, 3) uint8, `decode_s`.
- after labelling (`actor.LabelStage`): `image` dropped; + uint8 full-size maps or grid soft
  maps, the scores, `config_hash`, `label_s`, `device`.
- after encoding: the maps dropped; + `mask_png`, `saliency_png`, `fg_fraction`, `encode_s`.
- after writing (one store part per writer batch, or several when its PNGs exceed
  `PART_MAX_BYTES`): one row per status in the batch: `status`, `count`, `error_sample`, and the
  stage seconds (`decode_s`, `label_s`, `encode_s`, `write_s`) and `parts` on the first row.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from autosod.io import status as st
from autosod.io.decode import read_image, resize_to_input
from autosod.io.mask_codec import encode_mask_png, encode_soft_png, unpack_mask
from autosod.io.store.mask_store import MaskStore
from autosod.io.store.schema import SCORE_COLUMNS
from autosod.labeling.prepare import TODO_COLUMNS

__all__ = ["PART_MAX_BYTES", "decode_batch", "encode_batch", "read_todo", "write_batch"]

PART_MAX_BYTES = 256 << 20  # a writer batch holding more PNG bytes is cut into several parts
_ENCODED = ("image_id", "uri", "shard", "width", "height", "status", "error", "mean_entropy",
            "transport_cost", "mask_quality", "objectness", "config_hash", "device", "decode_s",
            "label_s")


def read_todo(batch: dict[str, np.ndarray], *, store: MaskStore,
              rows_per_block: int) -> Iterator[pa.Table]:
    """Todo files named in `batch["path"]` (in the store's scratch folder) -> their manifest
    rows (`prepare.TODO_COLUMNS`) in tables of `rows_per_block` rows, read a batch at a time."""
    for path in batch["path"]:
        with store.filesystem.open(str(path), "rb") as handle:
            for rows in pq.ParquetFile(handle).iter_batches(batch_size=rows_per_block,
                                                            columns=list(TODO_COLUMNS)):
                yield pa.Table.from_batches([rows])


def decode_batch(
    batch: dict[str, np.ndarray],
    *,
    input_size: int,
    max_pixels: int,
    storage_options: dict[str, Any] | None,
) -> dict[str, np.ndarray]:
    """Read and decode each row's bytes, resize to (S, S, 3); failures keep a status and zeros."""
    start = time.perf_counter()
    count = len(batch["uri"])
    images = np.zeros((count, input_size, input_size, 3), dtype=np.uint8)
    widths = np.zeros(count, dtype=np.int32)
    heights = np.zeros(count, dtype=np.int32)
    statuses = np.empty(count, dtype=object)
    errors = np.empty(count, dtype=object)
    for row, uri in enumerate(batch["uri"]):
        result = read_image(str(uri), max_pixels=max_pixels, min_size_px=input_size,
                            storage_options=storage_options)
        widths[row], heights[row] = result.width, result.height
        statuses[row], errors[row] = result.status, result.error
        if result.status == st.OK:
            try:
                images[row] = resize_to_input(result.rgb, input_size)
            except Exception as exc:  # per-row boundary
                statuses[row], errors[row] = st.DECODE_ERROR, f"resize failed: {exc}"
    elapsed = time.perf_counter() - start
    return {
        "image_id": np.asarray(batch["image_id"], dtype=object),
        "uri": np.asarray(batch["uri"], dtype=object),
        "shard": np.asarray(batch["shard"], dtype=np.int32),
        "width": widths,
        "height": heights,
        "status": statuses,
        "error": errors,
        "image": images,
        "decode_s": np.full(count, elapsed / max(count, 1), dtype=np.float64),
    }


def encode_batch(batch: dict[str, np.ndarray], *, threshold: float) -> dict[str, np.ndarray]:
    """CPU task after the actor: full-size maps -> mask and soft-map PNG bytes and fg_fraction.

    Rows the actor left at the grid (beyond its per-batch map budget) are upsampled here on the
    CPU with the same function (`maps.full_size`); rows that failed keep null PNGs and NaN scores.
    """
    start = time.perf_counter()
    count = len(batch["image_id"])
    mask_png = np.full(count, None, dtype=object)
    soft_png = np.full(count, None, dtype=object)
    fg_fraction = np.full(count, np.nan, dtype=np.float32)
    for row in np.flatnonzero(np.asarray(batch["status"], dtype=object) == st.OK):
        width = int(batch["width"][row])
        if batch["upsampled"][row]:
            soft, bits = batch["soft_map"][row], batch["mask_bits"][row]
        else:
            soft, bits = _upsample(batch, row, threshold=threshold)
        mask = unpack_mask(bits, width)
        mask_png[row] = encode_mask_png(mask)
        soft_png[row] = encode_soft_png(np.asarray(soft, dtype=np.uint8))
        fg_fraction[row] = mask.mean()
    out = {name: batch[name] for name in _ENCODED}
    out.update(mask_png=mask_png, saliency_png=soft_png, fg_fraction=fg_fraction)
    out["encode_s"] = np.full(count, (time.perf_counter() - start) / max(count, 1))
    return out


def _upsample(batch: dict[str, np.ndarray], row: int, *,
              threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """A row the actor left at the grid -> (uint8 soft map, packed mask) at its original size,
    on the CPU. torch is imported here only: the decode and write tasks stay light."""
    import torch

    from autosod.labeling.maps import full_size

    grid = (int(batch["grid"][row][0]), int(batch["grid"][row][1]))
    soft = torch.tensor(np.asarray(batch["soft_grid"][row], dtype=np.float32))
    size = (int(batch["height"][row]), int(batch["width"][row]))
    soft_map, bits = full_size(soft, grid, size, threshold=threshold)
    return soft_map.numpy(), bits.numpy()


def write_batch(batch: dict[str, np.ndarray], *, store: MaskStore) -> dict[str, np.ndarray]:
    """Writer body: the batch (`part_rows` rows, any shards) becomes one committed store part,
    filed under its lowest shard, or several consecutive ones when its PNG bytes exceed
    `PART_MAX_BYTES` (large images); returns counts."""
    start = time.perf_counter()
    shards = np.asarray(batch["shard"])
    parts = 0
    for rows in _part_slices(batch):
        store.write_part(_rows_for(batch, rows), shard=int(shards[rows].min()))
        parts += 1
    return _counts(batch, parts=parts, write_s=time.perf_counter() - start)


def _part_slices(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Row indices of each part: consecutive rows holding at most `PART_MAX_BYTES` of PNGs."""
    sizes = np.asarray([len(_png(m) or b"") + len(_png(s) or b"") for m, s in
                        zip(batch["mask_png"], batch["saliency_png"], strict=True)], np.int64)
    slices, first, total = [], 0, 0
    for row, size in enumerate(sizes):
        if total and total + size > PART_MAX_BYTES:
            slices.append(np.arange(first, row))
            first, total = row, 0
        total += size
    if len(sizes):
        slices.append(np.arange(first, len(sizes)))
    return slices


def _rows_for(batch: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, list]:
    """The store columns of the given rows as Python lists."""
    names = ("image_id", "uri", "width", "height", "status", "error", *SCORE_COLUMNS,
             "config_hash")
    out = {name: [_plain(v) for v in np.asarray(batch[name])[rows]] for name in names}
    for name in ("mask_png", "saliency_png"):
        out[name] = [_png(v) for v in np.asarray(batch[name])[rows]]
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _png(value: Any) -> bytes | None:
    """PNG bytes, or None for a failed row (a batch whose rows all failed carries a column of
    nulls, which reaches numpy batches as NaN)."""
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None


def _counts(batch: dict[str, np.ndarray], *, parts: int, write_s: float) -> dict[str, np.ndarray]:
    """One row per status: count, a sample error; stage seconds and parts on the first row."""
    statuses = np.asarray(batch["status"], dtype=object)
    names = sorted(set(statuses.tolist()))
    counts = [int((statuses == name).sum()) for name in names]
    samples = [next((str(e) for s, e in zip(statuses, batch["error"], strict=True) if s == name),
                    "") for name in names]
    first = np.zeros(len(names))
    out = {"status": np.asarray(names, dtype=object), "count": np.asarray(counts, np.int64),
           "error_sample": np.asarray(samples, dtype=object)}
    for key, total in (("decode_s", float(np.sum(batch["decode_s"]))),
                       ("label_s", float(np.sum(batch["label_s"]))),
                       ("encode_s", float(np.sum(batch["encode_s"]))), ("write_s", write_s),
                       ("parts", float(parts))):
        column = first.copy()
        if len(names):
            column[0] = total
        out[key] = column
    devices = sorted(set(np.asarray(batch["device"], dtype=object).tolist()))
    out["device"] = np.asarray([",".join(devices)] * len(names), dtype=object)
    return out
