"""Training data as pure functions on columnar batches (NumPy, Pillow; no Ray, no torch).

The job (autosod.training.job_data) maps these over Ray Data:

1. `part_rows`: the committed rows of one store part -> the `ok` rows, each with its quality
   weight, whether it passes `--min-quality`, and whether its id falls in the validation split.
2. `prepare_rows`: read each row's image from its `uri` (local or s3://), decode it, shrink it
   so that its longer side is at most the cache side, and decode the soft pseudo-mask at the
   same size. A row whose image can no longer be read keeps its failure status (counted in the
   run summary); nothing raises.

The prepared rows (`PREPARED_COLUMNS`) are what the run keeps in Ray's object store; images
and masks are raw uint8 bytes of (height, width, 3) and (height, width).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from autosod.io.decode import read_image
from autosod.io.mask_codec import decode_soft_png
from autosod.io.status import DECODE_ERROR, OK
from autosod.training.config import TrainConfig
from autosod.training.weighting import quality_weights

__all__ = [
    "BELOW_MIN_QUALITY",
    "PREPARED_COLUMNS",
    "STORE_COLUMNS",
    "decode_pixels",
    "is_validation",
    "part_rows",
    "prepare_rows",
    "shrink_pair",
]

STORE_COLUMNS = ["image_id", "uri", "status", "saliency_png", "mask_quality"]
PREPARED_COLUMNS = ("image_id", "store", "status", "error", "weight", "is_val", "height",
                    "width", "image", "mask")
BELOW_MIN_QUALITY = "below_min_quality"  # a row status of the run summary, not of the store
_SPLIT_SALT = b"autosod-validation-split:"


def is_validation(image_ids: np.ndarray | list[str], fraction: float) -> np.ndarray:
    """(N,) bool: the ids held out for validation, a fixed `fraction` of all ids by hash.

    The split depends on the id alone (sha256 of a salted id, as a number in [0, 1)), so it is
    the same whatever the store, order, worker count or seed.
    """
    out = np.zeros(len(image_ids), bool)
    for i, image_id in enumerate(image_ids):
        digest = hashlib.sha256(_SPLIT_SALT + str(image_id).encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0**64 < fraction
    return out


def part_rows(
    table: pa.Table, *, store_index: int, config: TrainConfig, val_fraction: float
) -> dict[str, np.ndarray]:
    """Committed rows of one part (`STORE_COLUMNS`) -> its ok rows as columns: image_id, uri,
    saliency_png, store, weight, is_val, and status (`ok` or `below_min_quality`)."""
    ok = np.asarray(table.column("status").to_pylist(), dtype=object) == OK
    rows = table.filter(pa.array(ok))
    quality = rows.column("mask_quality").to_numpy(zero_copy_only=False).astype(np.float64)
    keep, weights = quality_weights(quality, config)
    ids = np.asarray(rows.column("image_id").to_pylist(), dtype=object)
    return {
        "image_id": ids,
        "uri": np.asarray(rows.column("uri").to_pylist(), dtype=object),
        "saliency_png": np.asarray(rows.column("saliency_png").to_pylist(), dtype=object),
        "store": np.full(len(ids), store_index, np.int32),
        "weight": weights,
        "is_val": is_validation(ids, val_fraction),
        "status": np.where(keep, OK, BELOW_MIN_QUALITY).astype(object),
    }


def shrink_pair(rgb: np.ndarray, soft: np.ndarray, side_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The image shrunk so that its longer side is at most `side_px` (never enlarged; bicubic)
    and the soft mask resized to the same size (bilinear), whatever size it came at."""
    height, width = rgb.shape[:2]
    scale = min(1.0, side_px / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))
    if soft.shape != (size[1], size[0]):
        soft = np.asarray(Image.fromarray(soft).resize(size, Image.Resampling.BILINEAR))
    return rgb, soft


def _prepare_one(uri: str, soft_png: bytes, *, side_px: int, max_pixels: int,
                 storage_options: dict[str, Any] | None) -> tuple[str, str, Any, Any]:
    result = read_image(uri, max_pixels=max_pixels, min_size_px=side_px,
                        storage_options=storage_options)
    if not result.ok:
        return result.status, result.error[:500], None, None
    try:
        soft = decode_soft_png(soft_png)
    except Exception as exc:  # per-row boundary: a damaged mask in the store
        return DECODE_ERROR, f"pseudo-mask of {uri}: {type(exc).__name__}: {exc}"[:500], None, None
    rgb, soft = shrink_pair(result.rgb, soft, side_px)
    return OK, "", rgb, soft


def prepare_rows(
    batch: dict[str, np.ndarray],
    *,
    side_px: int,
    max_pixels: int,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Rows of `part_rows` -> `PREPARED_COLUMNS`: decoded, shrunk image and mask bytes for the
    ok rows; other rows keep their status with an error message and empty pixels."""
    count = len(batch["image_id"])
    status = np.asarray(batch["status"], dtype=object).copy()
    error = np.full(count, "", dtype=object)
    height, width = np.zeros(count, np.int32), np.zeros(count, np.int32)
    image, mask = np.full(count, b"", dtype=object), np.full(count, b"", dtype=object)
    for i in range(count):
        if status[i] != OK:
            continue
        status[i], error[i], rgb, soft = _prepare_one(
            str(batch["uri"][i]), batch["saliency_png"][i], side_px=side_px,
            max_pixels=max_pixels, storage_options=storage_options)
        if rgb is not None:
            height[i], width[i] = rgb.shape[:2]
            image[i], mask[i] = rgb.tobytes(), np.ascontiguousarray(soft).tobytes()
    return {
        "image_id": np.asarray(batch["image_id"], dtype=object),
        "store": np.asarray(batch["store"], np.int32),
        "status": status,
        "error": error,
        "weight": np.asarray(batch["weight"], np.float32),
        "is_val": np.asarray(batch["is_val"], bool),
        "height": height,
        "width": width,
        "image": image,
        "mask": mask,
    }


def decode_pixels(image: bytes, mask: bytes, height: int, width: int) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """The bytes of one prepared row -> image uint8 (H, W, 3), soft mask uint8 (H, W)."""
    rgb = np.frombuffer(image, np.uint8).reshape(height, width, 3)
    soft = np.frombuffer(mask, np.uint8).reshape(height, width)
    return rgb, soft
