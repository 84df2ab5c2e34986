"""Safe image decoding: bytes -> RGB uint8 with EXIF orientation, or a status and a reason.

Never raises on bad input: zero-byte, truncated, non-image, over-limit and undecodable data
become a `DecodeResult` with a failure status from `autosod.io.status`.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from autosod.io import status as st
from autosod.io.filesystem import read_bytes

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodeResult",
    "decode_image",
    "read_image",
    "resize_to_input",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 64_000_000  # about 8000 x 8000; Pillow itself refuses above 2 x 89.5 MP
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that transpose width and height
_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
)
_BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white


@dataclass(frozen=True)
class DecodeResult:
    """Outcome of decoding one image.

    `rgb` (H, W, 3) uint8 when `status == "ok"`, else None. `width`, `height`: the size of the
    upright original (after EXIF orientation); 0 when unknown. With `min_size_px` the JPEG may
    be decoded at a reduced scale, so `rgb` can be smaller than `width` x `height`.
    """

    rgb: np.ndarray | None
    status: str
    error: str
    width: int
    height: int

    @property
    def ok(self) -> bool:
        return self.status == st.OK


def _looks_like_image(data: bytes) -> bool:
    if data.startswith(_SIGNATURES):
        return True
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _fail(status: str, error: str, width: int = 0, height: int = 0) -> DecodeResult:
    return DecodeResult(rgb=None, status=status, error=error, width=width, height=height)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8: 16/32-bit scaled, alpha composited on white."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode != "I" or values.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a corrupt EXIF block must not fail the image
        return 1


def _check_size(width: int, height: int, max_pixels: int) -> DecodeResult | None:
    if width <= 0 or height <= 0:
        return _fail(st.DECODE_ERROR, f"image header gives size {width}x{height}")
    if width * height > max_pixels:
        return _fail(
            st.TOO_MANY_PIXELS,
            f"{width}x{height} = {width * height} pixels is above the limit of {max_pixels}; "
            "raise max_pixels if such images are expected",
            width,
            height,
        )
    return None


def _decode_opened(
    image: Image.Image, *, max_pixels: int, min_size_px: int | None
) -> DecodeResult:
    raw_w, raw_h = image.size
    orientation = _orientation(image)
    width, height = (raw_h, raw_w) if orientation in _SWAPS_AXES else (raw_w, raw_h)
    rejected = _check_size(width, height, max_pixels)
    if rejected is not None:
        return rejected
    if min_size_px and image.format == "JPEG":
        image.draft("RGB", (min_size_px, min_size_px))
    image.load()
    if orientation != 1:
        try:
            image = ImageOps.exif_transpose(image)
        except Exception as exc:  # keep the pixels as stored, say so
            logger.warning("EXIF orientation %s not applied: %s", orientation, exc)
    return DecodeResult(rgb=_to_rgb(image), status=st.OK, error="", width=width, height=height)


def decode_image(
    data: bytes | bytearray | memoryview | None, *, max_pixels: int, min_size_px: int | None = None
) -> DecodeResult:
    """Decode image bytes to upright RGB uint8 (first frame of multi-frame files).

    Grayscale, palette, CMYK, 16-bit and alpha inputs are converted (alpha composited on white,
    16-bit scaled to 8-bit). The pixel limit is checked on the header before any decoding.
    `min_size_px`: JPEGs may decode at 1/2, 1/4 or 1/8 scale while both sides stay at least
    this size (much faster when the image is resized down afterwards).
    """
    if not data:
        return _fail(st.EMPTY_FILE, "the file is empty (0 bytes)")
    if not isinstance(data, bytes):
        data = bytes(data)  # bytearray, memoryview, numpy bytes scalar
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _decode_opened(image, max_pixels=max_pixels, min_size_px=min_size_px)
    except Image.DecompressionBombError as exc:
        return _fail(st.TOO_MANY_PIXELS, f"Pillow refused the image as a decompression bomb: {exc}")
    except UnidentifiedImageError:
        if _looks_like_image(data):
            return _fail(st.TRUNCATED, f"image header cut short: only {len(data)} bytes")
        head = data[:16]
        return _fail(st.NOT_AN_IMAGE, f"no image format recognised; first bytes {head!r}")
    except (OSError, SyntaxError, EOFError) as exc:
        if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
            return _fail(st.TRUNCATED, f"image data ends early ({len(data)} bytes): {exc}")
        return _fail(st.DECODE_ERROR, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # per-row boundary: record the reason, never stop the batch
        return _fail(st.DECODE_ERROR, f"{type(exc).__name__}: {exc}")


def read_image(
    uri: str,
    *,
    max_pixels: int,
    min_size_px: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> DecodeResult:
    """Read one file or object and decode it; read failures become status `read_error`."""
    try:
        data = read_bytes(uri, storage_options)
    except Exception as exc:  # per-row boundary: missing object, permissions, network
        return _fail(st.READ_ERROR, f"cannot read {uri}: {type(exc).__name__}: {exc}")
    return decode_image(data, max_pixels=max_pixels, min_size_px=min_size_px)


def resize_to_input(rgb: np.ndarray, size_px: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size_px, size_px, 3) uint8, bicubic with antialiasing.

    The aspect ratio is not kept: masks are resized back to the original size afterwards.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got shape {rgb.shape} dtype {rgb.dtype}")
    if size_px < 1:
        raise ValueError(f"size_px must be >= 1, got {size_px}")
    if rgb.shape[0] == size_px and rgb.shape[1] == size_px:
        return rgb
    image = Image.fromarray(rgb)
    return np.asarray(image.resize((size_px, size_px), Image.Resampling.BICUBIC), dtype=np.uint8)
