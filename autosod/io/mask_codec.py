"""PNG codecs for masks: binary masks as 1-bit PNG, soft saliency maps as 8-bit PNG.

Round trips are exact: `decode_mask_png(encode_mask_png(m)) == m` for bool masks, and
`decode_soft_png(encode_soft_png(s)) == s` for uint8 maps (float maps are quantised once,
`round(255 * s)`).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = [
    "decode_mask_png",
    "decode_soft_png",
    "encode_mask_png",
    "encode_soft_png",
    "unpack_mask",
]

_COMPRESS_LEVEL = 6


def _check_2d(array: np.ndarray, name: str) -> None:
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty (H, W) array, got shape {array.shape}")


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=_COMPRESS_LEVEL)
    return buffer.getvalue()


def _open_png(data: bytes, what: str) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    if image.format != "PNG":
        raise ValueError(f"{what} must be PNG bytes, got format {image.format!r}")
    return image


def encode_mask_png(mask: np.ndarray) -> bytes:
    """(H, W) bool (or 0/1 integers) -> 1-bit PNG bytes."""
    mask = np.asarray(mask)
    _check_2d(mask, "mask")
    if mask.dtype != np.bool_:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError(
                f"mask must be bool or hold only 0 and 1, got values in "
                f"[{mask.min()}, {mask.max()}]; threshold it first"
            )
        mask = mask.astype(np.bool_)
    return _png_bytes(Image.fromarray(np.ascontiguousarray(mask)))


def decode_mask_png(data: bytes) -> np.ndarray:
    """PNG bytes -> (H, W) bool. 1-bit PNGs decode exactly; 8-bit ones are binarised at 128."""
    image = _open_png(data, "mask_png")
    if image.mode == "1":
        return np.asarray(image, dtype=np.bool_)
    return np.asarray(image.convert("L"), dtype=np.uint8) >= 128


def encode_soft_png(soft: np.ndarray) -> bytes:
    """(H, W) uint8, or float in [0, 1] (stored as round(255 * soft)) -> 8-bit gray PNG."""
    soft = np.asarray(soft)
    _check_2d(soft, "soft map")
    if soft.dtype != np.uint8:
        if not np.issubdtype(soft.dtype, np.floating):
            raise ValueError(f"soft map must be uint8 or float in [0, 1], got dtype {soft.dtype}")
        if not np.isfinite(soft).all() or soft.min() < 0.0 or soft.max() > 1.0:
            raise ValueError(
                f"float soft map must be finite and in [0, 1], got range "
                f"[{np.nanmin(soft)}, {np.nanmax(soft)}]; clip or normalise it first"
            )
        soft = np.rint(soft * 255.0).astype(np.uint8)
    return _png_bytes(Image.fromarray(np.ascontiguousarray(soft)))


def decode_soft_png(data: bytes, *, as_float: bool = False) -> np.ndarray:
    """8-bit PNG bytes -> (H, W) uint8, or float32 in [0, 1] when `as_float`."""
    gray = np.asarray(_open_png(data, "saliency_png").convert("L"), dtype=np.uint8)
    return gray.astype(np.float32) / 255.0 if as_float else gray


def unpack_mask(bits: np.ndarray, width: int) -> np.ndarray:
    """(H, ceil(W / 8)) uint8 rows packed as `np.packbits(mask, axis=1)` -> (H, W) bool."""
    return np.unpackbits(np.asarray(bits, dtype=np.uint8), axis=1, count=width).view(bool)
