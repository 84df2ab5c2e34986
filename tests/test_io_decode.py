"""Hostile and unusual inputs to `decode_image`: a status for every bad file, exact pixels
for every good one, and never an exception."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autosod.io import DEFAULT_MAX_PIXELS, decode_image, read_image, resize_to_input
from autosod.io import status as st

LIMIT = 1_000_000


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _noise_jpeg(width: int = 256, height: int = 192) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return _encode(Image.fromarray(pixels), "JPEG", quality=90)


def _png_with_header_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR claims `width` x `height` (a decompression bomb header)."""
    data = bytearray(_encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


BAD_INPUTS = {
    "zero_bytes": (b"", st.EMPTY_FILE),
    "truncated_jpeg": (_noise_jpeg()[: len(_noise_jpeg()) // 2], st.TRUNCATED),
    "jpeg_header_only": (_noise_jpeg()[:3], st.TRUNCATED),
    "random_bytes": (np.random.default_rng(1).bytes(4096), st.NOT_AN_IMAGE),
    "text_named_jpg": (b"this is not an image\n" * 10, st.NOT_AN_IMAGE),
    "over_limit": (_encode(Image.new("L", (1100, 1000)), "PNG"), st.TOO_MANY_PIXELS),
    "bomb_header": (_png_with_header_size(60_000, 60_000), st.TOO_MANY_PIXELS),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_gets_status_and_reason(name: str) -> None:
    data, expected = BAD_INPUTS[name]
    result = decode_image(data, max_pixels=LIMIT)
    assert result.status == expected, f"{name}: {result.status} ({result.error})"
    assert result.rgb is None and not result.ok
    assert len(result.error) > 10, f"{name}: reason too terse: {result.error!r}"


def test_pillow_bomb_limit_also_reported_when_our_limit_is_higher() -> None:
    result = decode_image(_png_with_header_size(60_000, 60_000), max_pixels=10**12)
    assert result.status == st.TOO_MANY_PIXELS, result.error


def test_over_limit_reason_names_size_and_limit() -> None:
    result = decode_image(BAD_INPUTS["over_limit"][0], max_pixels=LIMIT)
    assert "1100x1000" in result.error and str(LIMIT) in result.error
    assert (result.width, result.height) == (1100, 1000)


def test_text_file_named_jpg_read_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "photo.JPG"
    path.write_text("plain text, not a JPEG")
    assert read_image(str(path), max_pixels=LIMIT).status == st.NOT_AN_IMAGE


def test_missing_file_is_read_error(tmp_path: Path) -> None:
    result = read_image(str(tmp_path / "gone.jpg"), max_pixels=LIMIT)
    assert result.status == st.READ_ERROR and "gone.jpg" in result.error


def test_16bit_png_scaled_to_8bit() -> None:
    values = np.linspace(0, 65535, 64 * 32).astype(np.uint16).reshape(32, 64)
    result = decode_image(_encode(Image.fromarray(values), "PNG"), max_pixels=LIMIT)
    assert result.ok, result.error
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert result.rgb.shape == (32, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(result.rgb[:, :, channel], expected)


def test_cmyk_jpeg_converted_to_rgb() -> None:
    image = Image.new("CMYK", (64, 32), (0, 0, 0, 0))  # white
    image.paste((255, 0, 0, 0), (0, 0, 32, 32))  # left half pure cyan
    result = decode_image(_encode(image, "JPEG", quality=95), max_pixels=LIMIT)
    assert result.ok, result.error
    cyan = result.rgb[8:24, 4:28].reshape(-1, 3).mean(axis=0)
    white = result.rgb[8:24, 36:60].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(cyan, [0, 255, 255], atol=8)
    np.testing.assert_allclose(white, [255, 255, 255], atol=8)


def test_palette_png_with_transparency_composited_on_white() -> None:
    indices = np.ones((10, 20), dtype=np.uint8)
    indices[:, :8] = 0  # palette entry 0 is transparent
    image = Image.fromarray(indices, mode="P")
    image.putpalette([255, 0, 0, 0, 200, 0] + [0] * (256 * 3 - 6))
    result = decode_image(_encode(image, "PNG", transparency=0), max_pixels=LIMIT)
    assert result.ok, result.error
    assert (result.rgb[:, :8] == [255, 255, 255]).all(), "transparent pixels must be white"
    assert (result.rgb[:, 8:] == [0, 200, 0]).all()


def test_rgba_alpha_blended_on_white() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128
    result = decode_image(_encode(Image.fromarray(rgba), "PNG"), max_pixels=LIMIT)
    expected = np.rint(np.array([200, 0, 0]) * 128 / 255 + 255 * (1 - 128 / 255))
    np.testing.assert_allclose(result.rgb[0, 0], expected, atol=1)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied(orientation: int) -> None:
    stored = np.zeros((32, 64, 3), dtype=np.uint8)  # 64 wide, 32 tall: red left, blue right
    stored[:, :32] = [255, 0, 0]
    stored[:, 32:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif)
    result = decode_image(data, max_pixels=LIMIT)
    turns = {3: 2, 6: -1, 8: 1}[orientation]  # np.rot90 counter-clockwise quarter turns
    expected = np.rot90(stored, k=turns)
    assert result.rgb.shape == expected.shape
    assert (result.width, result.height) == (expected.shape[1], expected.shape[0])
    diff = np.abs(result.rgb.astype(int) - expected.astype(int))
    assert np.median(diff) < 6, f"orientation {orientation} not applied"


def test_one_pixel_image_exact() -> None:
    result = decode_image(_encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), max_pixels=LIMIT)
    assert result.ok and result.rgb.tolist() == [[[10, 20, 30]]]
    assert resize_to_input(result.rgb, 8).shape == (8, 8, 3)


def test_extreme_aspect_ratio() -> None:
    row = np.arange(10_000, dtype=np.uint16) % 256
    gray = row.astype(np.uint8)[None, :]
    result = decode_image(_encode(Image.fromarray(gray), "PNG"), max_pixels=LIMIT)
    assert result.ok and result.rgb.shape == (1, 10_000, 3)
    assert (result.rgb[0, :, 1] == gray[0]).all()
    square = resize_to_input(result.rgb, 32)
    assert square.shape == (32, 32, 3) and square.dtype == np.uint8


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP", "GIF"])
def test_lossless_formats_exact(fmt: str) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (12, 9), dtype=np.uint8)
    image = Image.fromarray(pixels).convert("RGB") if fmt != "GIF" else Image.fromarray(pixels)
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    result = decode_image(_encode(image, fmt, **kwargs), max_pixels=LIMIT)
    assert result.ok, result.error
    assert (result.rgb == np.repeat(pixels[:, :, None], 3, axis=2)).all()


def test_multi_frame_gif_gives_first_frame() -> None:
    frames = [Image.new("L", (8, 8), value) for value in (40, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    result = decode_image(buffer.getvalue(), max_pixels=LIMIT)
    assert result.ok and (result.rgb == 40).all()


def test_reduced_jpeg_decode_keeps_original_size() -> None:
    data = _encode(Image.new("RGB", (800, 600), (90, 30, 160)), "JPEG", quality=90)
    result = decode_image(data, max_pixels=DEFAULT_MAX_PIXELS, min_size_px=224)
    assert (result.width, result.height) == (800, 600)
    assert min(result.rgb.shape[:2]) >= 224 and result.rgb.shape[:2] != (600, 800)
    np.testing.assert_allclose(result.rgb.reshape(-1, 3).mean(axis=0), [90, 30, 160], atol=4)


def test_resize_to_input_rejects_wrong_layout() -> None:
    with pytest.raises(ValueError, match="expected \\(H, W, 3\\) uint8"):
        resize_to_input(np.zeros((4, 4), dtype=np.uint8), 8)
