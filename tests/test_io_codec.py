"""Mask codecs: exact round trips, the on-disk PNG format, and clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from autosod.io import decode_mask_png, decode_soft_png, encode_mask_png, encode_soft_png


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (240, 320), (3, 1000)])
def test_binary_mask_round_trip_exact_and_1bit(shape: tuple[int, int]) -> None:
    mask = np.random.default_rng(sum(shape)).random(shape) > 0.5
    data = encode_mask_png(mask)
    assert Image.open(io.BytesIO(data)).mode == "1"
    decoded = decode_mask_png(data)
    assert decoded.dtype == np.bool_ and decoded.shape == shape
    np.testing.assert_array_equal(decoded, mask)


def test_zero_one_integers_accepted_other_values_rejected() -> None:
    ints = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(decode_mask_png(encode_mask_png(ints)), ints.astype(bool))
    with pytest.raises(ValueError, match="threshold it first"):
        encode_mask_png(np.array([[0, 255]], dtype=np.uint8))


def test_soft_map_uint8_round_trip_exact() -> None:
    soft = np.random.default_rng(3).integers(0, 256, (31, 17), dtype=np.uint8)
    data = encode_soft_png(soft)
    image = Image.open(io.BytesIO(data))
    assert image.mode == "L" and image.format == "PNG"
    np.testing.assert_array_equal(decode_soft_png(data), soft)


def test_soft_map_float_quantised_once() -> None:
    soft = np.random.default_rng(4).random((9, 11)).astype(np.float32)
    decoded = decode_soft_png(encode_soft_png(soft), as_float=True)
    np.testing.assert_array_equal(decoded, np.rint(soft * 255) / np.float32(255))
    assert np.abs(decoded - soft).max() <= 0.5 / 255 + 1e-6
    again = decode_soft_png(encode_soft_png(decoded), as_float=True)
    np.testing.assert_array_equal(again, decoded)


def test_soft_map_out_of_range_rejected() -> None:
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        encode_soft_png(np.full((2, 2), 1.5))
    with pytest.raises(ValueError, match="non-empty"):
        encode_soft_png(np.zeros((0, 3), dtype=np.uint8))
