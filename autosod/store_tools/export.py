"""`autosod export STORE --out DIR [--soft]`: one PNG per labelled image, `<image stem>.png`.

Binary masks are written as 8-bit PNGs (0 / 255) at the original image size, the layout of SOD
benchmark folders; `--soft` writes the 8-bit saliency maps instead. Failed rows are skipped.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from autosod.io.filesystem import file_stem, join_uri, open_filesystem
from autosod.io.mask_codec import decode_mask_png
from autosod.io.status import OK
from autosod.io.store.mask_store import MaskStore

__all__ = ["ExportResult", "export_store"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: PNG count, failed rows skipped, stems renamed to stay unique."""

    written: int
    skipped_failed: int
    renamed: int
    out: str


def _mask_png_8bit(mask_png: bytes) -> bytes:
    mask = decode_mask_png(mask_png)
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def export_store(
    store: str,
    out: str,
    *,
    soft: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> ExportResult:
    """Write each committed ok row's mask (or soft map) to `out/<stem>.png`.

    Two images with the same stem (from different folders) get `<stem>-<image_id[:8]>.png`
    for the second and later ones, with a warning.
    """
    opened = MaskStore.open(store, storage_options=storage_options)
    out_fs, out_root = open_filesystem(out, storage_options)
    out_fs.makedirs(out_root, exist_ok=True)
    column = "saliency_png" if soft else "mask_png"
    used: set[str] = set()
    written = skipped = renamed = 0
    for batch in opened.iter_batches(["image_id", "uri", "status", column], batch_size=256):
        rows = batch.to_pydict()
        for image_id, uri, status, data in zip(rows["image_id"], rows["uri"], rows["status"],
                                               rows[column], strict=True):
            if status != OK or data is None:
                skipped += 1
                continue
            stem = file_stem(uri)
            if stem in used:
                stem, renamed = f"{stem}-{image_id[:8]}", renamed + 1
                logger.warning("two images share the stem of %s; writing %s.png", uri, stem)
            used.add(stem)
            payload = data if soft else _mask_png_8bit(data)
            out_fs.pipe_file(join_uri(out_root, f"{stem}.png"), payload)
            written += 1
    logger.info("exported %d %s PNGs to %s (%d failed rows skipped)", written,
                "soft" if soft else "mask", out, skipped)
    return ExportResult(written=written, skipped_failed=skipped, renamed=renamed, out=out)
