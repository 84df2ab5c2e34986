"""`autosod preview STORE --out DIR`: a PNG grid (image | mask overlay | id) and an index.html.

Each tile shows the original image, the same image with the mask tinted red and outlined, and a
caption with the image id, file stem, status and mask quality. Failed rows get a grey tile with
their status, so a person sees failures too.
"""

from __future__ import annotations

import html
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from autosod.io.decode import DEFAULT_MAX_PIXELS, read_image
from autosod.io.filesystem import file_stem
from autosod.io.mask_codec import decode_mask_png
from autosod.io.status import OK
from autosod.io.store.mask_store import MaskStore

__all__ = ["PreviewResult", "overlay_mask", "write_preview"]

logger = logging.getLogger(__name__)

_CAPTION_PX = 40
_PAD_PX = 6
_TINT = np.array([255, 40, 40], dtype=np.float32)
_OUTLINE = np.array([255, 255, 0], dtype=np.uint8)
_PREVIEW_COLUMNS = ["image_id", "uri", "status", "error", "mask_png", "mask_quality",
                    "fg_fraction"]


@dataclass(frozen=True)
class PreviewResult:
    """Files written by `write_preview` and how many rows each kind of tile shows."""

    grid_png: Path
    index_html: Path
    shown_ok: int
    shown_failed: int


def overlay_mask(rgb: np.ndarray, mask: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) uint8 and (H, W) bool -> (H, W, 3) uint8: red tint inside, yellow outline."""
    out = rgb.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * _TINT
    out = out.astype(np.uint8)
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    out[mask & ~inner] = _OUTLINE
    return out


def _font(size_px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size_px)
    except (OSError, TypeError, ValueError):  # Pillow without FreeType: bitmap font
        return ImageFont.load_default()


def _thumb(array: np.ndarray, size_px: int, resample: Image.Resampling) -> Image.Image:
    """Fit (H, W, 3) into a size_px square keeping the aspect ratio (small images scale up)."""
    height, width = array.shape[:2]
    scale = size_px / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return Image.fromarray(array).resize(new_size, resample)


def _tile(row: dict, thumb_px: int, font: ImageFont.ImageFont,
          storage_options: dict[str, Any] | None) -> Image.Image:
    """One tile: [image | overlay] over a two-line caption."""
    tile = Image.new("RGB", (2 * thumb_px + _PAD_PX, thumb_px + _CAPTION_PX), (32, 32, 32))
    draw = ImageDraw.Draw(tile)
    status = row["status"]
    caption = f"{row['image_id'][:12]}  {file_stem(row['uri'])[:22]}"
    detail = status
    if status == OK and row["mask_png"] is not None:
        decoded = read_image(row["uri"], max_pixels=DEFAULT_MAX_PIXELS,
                             storage_options=storage_options)
        mask = decode_mask_png(row["mask_png"])
        if decoded.status == OK and decoded.rgb.shape[:2] == mask.shape:
            left = _thumb(decoded.rgb, thumb_px, Image.Resampling.BICUBIC)
            right = _thumb(overlay_mask(decoded.rgb, mask), thumb_px, Image.Resampling.NEAREST)
            tile.paste(left, (0, 0))
            tile.paste(right, (thumb_px + _PAD_PX, 0))
            detail = f"ok  quality {row['mask_quality']:.2f}  fg {row['fg_fraction']:.2f}"
        else:
            detail = f"ok, but image unreadable now ({decoded.status})"
    else:
        draw.rectangle((0, 0, 2 * thumb_px + _PAD_PX, thumb_px), fill=(90, 90, 90))
        draw.text((8, thumb_px // 2 - 8), f"{status}: {row['error'][:40]}", fill=(255, 200, 200),
                  font=font)
    draw.text((4, thumb_px + 3), caption, fill=(255, 255, 255), font=font)
    draw.text((4, thumb_px + 3 + _CAPTION_PX // 2), detail, fill=(200, 230, 255), font=font)
    return tile


def _select(store: MaskStore, max_images: int, max_failed: int) -> tuple[list, list]:
    ok_rows: list[dict] = []
    failed_rows: list[dict] = []
    for batch in store.iter_batches(_PREVIEW_COLUMNS, batch_size=256):
        for row in batch.to_pylist():
            target = ok_rows if row["status"] == OK else failed_rows
            limit = max_images if row["status"] == OK else max_failed
            if len(target) < limit:
                target.append(row)
        if len(ok_rows) >= max_images and len(failed_rows) >= max_failed:
            break
    ok_rows.sort(key=lambda r: r["uri"])
    return ok_rows, failed_rows


def _index_html(rows: list[dict], grid_name: str, store_uri: str) -> str:
    cells = "\n".join(
        f"<tr><td><code>{html.escape(r['image_id'])}</code></td><td>{html.escape(r['uri'])}"
        f"</td><td>{html.escape(r['status'])}</td><td>{_fmt(r['mask_quality'])}</td>"
        f"<td>{_fmt(r['fg_fraction'])}</td><td>{html.escape(r['error'] or '')}</td></tr>"
        for r in rows)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>autosod preview</title>"
        "<style>body{font-family:sans-serif;background:#222;color:#eee}td,th{padding:2px 8px}"
        "</style></head><body>"
        f"<h1>autosod preview of {html.escape(store_uri)}</h1>"
        f"<p><img src='{grid_name}' alt='image and mask overlay grid'></p>"
        "<table><tr><th>image id</th><th>uri</th><th>status</th><th>mask quality</th>"
        f"<th>fg fraction</th><th>error</th></tr>\n{cells}</table></body></html>\n")


def _fmt(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.3f}"


def write_preview(
    store: str,
    out: str | Path,
    *,
    max_images: int = 24,
    max_failed: int = 4,
    columns: int = 3,
    thumb_px: int = 200,
    storage_options: dict[str, Any] | None = None,
) -> PreviewResult:
    """Write `out/preview.png` (tiles of up to `max_images` ok and `max_failed` failed rows) and
    `out/index.html` (the grid plus a table of ids, URIs, statuses and scores)."""
    if max_images < 0 or max_failed < 0 or columns < 1 or thumb_px < 32:
        raise ValueError(f"need max_images >= 0, max_failed >= 0, columns >= 1, thumb_px >= 32; "
                         f"got {max_images}, {max_failed}, {columns}, {thumb_px}")
    opened = MaskStore.open(store, storage_options=storage_options)
    ok_rows, failed_rows = _select(opened, max_images, max_failed)
    rows = ok_rows + failed_rows
    if not rows:
        raise ValueError(f"store {store} has no committed rows to preview; run `autosod label`")
    font = _font(14)
    tiles = [_tile(row, thumb_px, font, storage_options) for row in rows]
    width, height = tiles[0].size
    grid_rows = math.ceil(len(tiles) / columns)
    grid = Image.new("RGB", (columns * (width + _PAD_PX) + _PAD_PX,
                             grid_rows * (height + _PAD_PX) + _PAD_PX), (12, 12, 12))
    for index, tile in enumerate(tiles):
        col, row = index % columns, index // columns
        grid.paste(tile, (_PAD_PX + col * (width + _PAD_PX), _PAD_PX + row * (height + _PAD_PX)))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid_png, index_html = out_dir / "preview.png", out_dir / "index.html"
    grid.save(grid_png)
    index_html.write_text(_index_html(rows, grid_png.name, store), encoding="utf-8")
    logger.info("preview of %d ok and %d failed rows written to %s", len(ok_rows),
                len(failed_rows), out_dir)
    return PreviewResult(grid_png, index_html, len(ok_rows), len(failed_rows))
