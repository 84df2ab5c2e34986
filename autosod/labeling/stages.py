"""The three stages of the labelling job as plain callables on columnar batches (no Ray here).

`labeling.py` runs them inside Ray Data: `decode_batch` in CPU tasks, `LabelStage` in the POTNet
actor pool, `write_batch` in writer tasks. Each can be tested on a hand-made dict batch.

Batch columns (numpy arrays of length B):
- manifest rows: `image_id`, `uri`, `shard`.
- after decode: + `width`, `height`, `status`, `error`, `image` (B, S, S, 3) uint8, `decode_s`.
- after labelling: `image` dropped; + `mask_png`, `saliency_png`, the scores, `config_hash`,
  `label_s`, `device`.
- after writing (one store part per writer batch): one row per status in the batch: `status`,
  `count`, `error_sample`, and the stage seconds (`decode_s`, `label_s`, `write_s`) and `parts`
  on the first row.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import torch

from autosod.io import status as st
from autosod.io.decode import read_image, resize_to_input
from autosod.io.mask_codec import encode_mask_png, encode_soft_png
from autosod.io.store.mask_store import MaskStore
from autosod.io.store.schema import SCORE_COLUMNS
from autosod.labeling.config import LabelerConfig
from autosod.labeling.labeler import PseudoLabeler

__all__ = ["PART_MAX_BYTES", "PID_DIR_ENV", "LabelStage", "decode_batch", "write_batch"]

logger = logging.getLogger(__name__)

PID_DIR_ENV = "AUTOSOD_ACTOR_PID_DIR"  # tests only: each LabelStage writes its pid file here
PART_MAX_BYTES = 256 << 20  # a writer batch holding more PNG bytes is cut into several parts


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


class LabelStage:
    """POTNet actor body: loads the backbone once; (B, S, S, 3) images in, mask bytes out.

    Features and soft maps stay inside; only PNG bytes and per-image scores leave. Rows that
    failed earlier pass through unchanged (null masks, NaN scores).
    """

    def __init__(self, labeler: LabelerConfig, config_hash: str, *, bf16: bool = True,
                 storage_options: dict[str, Any] | None = None) -> None:
        self._labeler = PseudoLabeler(labeler, storage_options=storage_options)
        self._config_hash = config_hash
        device = torch.device(self._labeler.device)
        self._autocast = bf16 and device.type == "cuda"
        self._device = f"{device}{' bf16' if self._autocast else ''}"
        logger.info("POTNet actor ready on %s (pid %d)", self._device, os.getpid())
        pid_dir = os.environ.get(PID_DIR_ENV)
        if pid_dir:
            os.makedirs(pid_dir, exist_ok=True)
            with open(os.path.join(pid_dir, f"{os.getpid()}.pid"), "w") as handle:
                handle.write(str(os.getpid()))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        count = len(batch["image_id"])
        statuses = np.asarray(batch["status"], dtype=object).copy()
        errors = np.asarray(batch["error"], dtype=object).copy()
        masks = np.full(count, None, dtype=object)
        softs = np.full(count, None, dtype=object)
        scores = {name: np.full(count, np.nan, dtype=np.float32) for name in SCORE_COLUMNS}
        ok_rows = np.flatnonzero(statuses == st.OK)
        if ok_rows.size:
            self._label_rows(batch, ok_rows, masks, softs, scores, statuses, errors)
        out = {name: batch[name] for name in ("image_id", "uri", "shard", "width", "height",
                                               "decode_s")}
        out.update(status=statuses, error=errors, mask_png=masks, saliency_png=softs, **scores)
        out["config_hash"] = np.full(count, self._config_hash, dtype=object)
        out["device"] = np.full(count, self._device, dtype=object)
        out["label_s"] = np.full(count, (time.perf_counter() - start) / max(count, 1))
        return out

    def _label_rows(self, batch: dict[str, np.ndarray], rows: np.ndarray, masks: np.ndarray,
                    softs: np.ndarray, scores: dict[str, np.ndarray], statuses: np.ndarray,
                    errors: np.ndarray) -> None:
        """Label the ok rows in one call; a failure marks them all `model_error`."""
        sizes = [(int(batch["height"][r]), int(batch["width"][r])) for r in rows]
        try:
            images = np.ascontiguousarray(batch["image"][rows])
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self._autocast):
                features = self._labeler.extractor(images)  # float32 out (B, N, D), (B, C, N)
            result = self._labeler.label_features(features, sizes)  # CuPy on CUDA, else NumPy
            for index, row in enumerate(rows):
                masks[row] = encode_mask_png(result.masks[index])
                softs[row] = encode_soft_png(result.softs[index])
                for name in SCORE_COLUMNS:
                    scores[name][row] = getattr(result, name)[index]
        except Exception as exc:  # per-batch boundary: record the reason on each row
            logger.exception("labelling a batch of %d images failed", rows.size)
            statuses[rows] = st.MODEL_ERROR
            errors[rows] = f"{type(exc).__name__}: {exc}"[:500]


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
                       ("label_s", float(np.sum(batch["label_s"]))), ("write_s", write_s),
                       ("parts", float(parts))):
        column = first.copy()
        if len(names):
            column[0] = total
        out[key] = column
    devices = sorted(set(np.asarray(batch["device"], dtype=object).tolist()))
    out["device"] = np.asarray([",".join(devices)] * len(names), dtype=object)
    return out
