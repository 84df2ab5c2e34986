"""Joint augmentation: geometry keeps image and mask aligned, colour never touches the mask."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from autosod.training.augment import augment_pair, crop_box, jitter_colour
from autosod.training.config import AugmentConfig

NO_COLOUR = AugmentConfig(
    brightness=0, contrast=0, saturation=0, grayscale_prob=0, blur_prob=0, flip_prob=0.5
)
WHOLE = AugmentConfig(scale_min=1, scale_max=1, aspect_max=1, flip_prob=0)


def _scene(height: int = 120, width: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A white square off the centre (left half) on black; the mask marks the same square."""
    image = np.zeros((height, width, 3), np.uint8)
    image[30:80, 20:70] = 255
    mask = np.zeros((height, width), np.uint8)
    mask[30:80, 20:70] = 255
    return image, mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def test_geometry_keeps_image_and_mask_aligned() -> None:
    image, mask = _scene()
    seen = 0
    for seed in range(16):
        out_image, out_mask = augment_pair(
            image, mask, size_px=64, config=NO_COLOUR, rng=np.random.default_rng(seed)
        )
        assert out_image.shape == (64, 64, 3) and out_image.dtype == np.uint8
        assert out_mask.shape == (64, 64) and out_mask.dtype == np.uint8
        square_in_image = out_image.mean(axis=2) > 127
        square_in_mask = out_mask > 127
        if square_in_image.sum() > 20:
            seen += 1
            assert _iou(square_in_image, square_in_mask) > 0.9, f"seed {seed}"
        else:
            assert square_in_mask.sum() < 40, f"seed {seed}: mask shows a square the image lacks"
    assert seen >= 8  # most crops contain the square, so the check above ran


def test_mask_at_another_resolution_is_cropped_at_the_same_place() -> None:
    image, mask = _scene(120, 160)
    half = np.asarray(Image.fromarray(mask).resize((80, 60), Image.NEAREST))
    for seed in range(8):
        out_image, out_mask = augment_pair(
            image, half, size_px=64, config=NO_COLOUR, rng=np.random.default_rng(seed)
        )
        square_in_image = out_image.mean(axis=2) > 127
        if square_in_image.sum() > 50:
            assert _iou(square_in_image, out_mask > 127) > 0.85


def test_flip_moves_the_square_to_the_other_side() -> None:
    image, mask = _scene()
    config = dataclasses.replace(WHOLE, flip_prob=1.0)
    _, plain = augment_pair(image, mask, size_px=64, config=WHOLE, rng=np.random.default_rng(0))
    _, flipped = augment_pair(image, mask, size_px=64, config=config, rng=np.random.default_rng(0))
    assert plain[:, :32].mean() > plain[:, 32:].mean()  # the square is in the left half
    assert np.array_equal(flipped, plain[:, ::-1])


def test_whole_image_view_matches_a_plain_resize() -> None:
    image, mask = _scene()
    _, out_mask = augment_pair(image, mask, size_px=64, config=WHOLE, rng=np.random.default_rng(3))
    expected = np.asarray(Image.fromarray(mask).resize((64, 64), Image.BILINEAR))
    assert np.array_equal(out_mask, expected)


def test_photometric_steps_never_touch_the_mask() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 110, 3), dtype=np.uint8)
    mask = rng.integers(0, 256, (90, 110), dtype=np.uint8)
    strong = dataclasses.replace(
        WHOLE, brightness=0.9, contrast=0.9, saturation=0.9, grayscale_prob=1.0, blur_prob=1.0
    )
    plain_image, plain_mask = augment_pair(
        image, mask, size_px=48, config=WHOLE, rng=np.random.default_rng(5)
    )
    strong_image, strong_mask = augment_pair(
        image, mask, size_px=48, config=strong, rng=np.random.default_rng(5)
    )
    assert not np.array_equal(plain_image, strong_image)  # the colour steps did run
    assert np.array_equal(plain_mask, strong_mask)


def test_same_seed_same_output_other_seed_other_output() -> None:
    image, mask = _scene()
    config = AugmentConfig()
    a = augment_pair(image, mask, size_px=64, config=config, rng=np.random.default_rng(1))
    b = augment_pair(image, mask, size_px=64, config=config, rng=np.random.default_rng(1))
    c = augment_pair(image, mask, size_px=64, config=config, rng=np.random.default_rng(2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_saturation_leaves_gray_images_gray_and_grayscale_equalises_channels() -> None:
    gray = np.full((8, 8, 3), 100, np.uint8)
    only_saturation = AugmentConfig(brightness=0, contrast=0, saturation=0.9, grayscale_prob=0)
    out = jitter_colour(gray, config=only_saturation, rng=np.random.default_rng(0))
    assert np.array_equal(out, gray)
    colour = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    to_gray = AugmentConfig(brightness=0, contrast=0, saturation=0, grayscale_prob=1.0)
    out = jitter_colour(colour, config=to_gray, rng=np.random.default_rng(0))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    expected = np.round(colour.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1


def test_brightness_scales_within_its_range() -> None:
    gray = np.full((4, 4, 3), 100, np.uint8)
    config = AugmentConfig(brightness=0.3, contrast=0, saturation=0, grayscale_prob=0)
    values = {
        int(jitter_colour(gray, config=config, rng=np.random.default_rng(s))[0, 0, 0])
        for s in range(20)
    }
    assert min(values) >= 70 and max(values) <= 130 and len(values) > 5


def test_crop_box_stays_inside_and_covers_its_share() -> None:
    config = AugmentConfig(scale_min=0.4, scale_max=0.6, aspect_max=1.0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        left, top, right, bottom = crop_box(100, 200, config=config, rng=rng)
        assert 0 <= left < right <= 200 and 0 <= top < bottom <= 100
        assert 0.38 <= (right - left) * (bottom - top) / 20000 <= 0.62


def test_bad_inputs_are_refused() -> None:
    image, mask = _scene()
    with pytest.raises(ValueError, match="image must be uint8"):
        augment_pair(image.astype(np.float32), mask, size_px=64, config=WHOLE,
                     rng=np.random.default_rng(0))  # fmt: skip
    with pytest.raises(ValueError, match="mask must be uint8"):
        augment_pair(image, mask[..., None], size_px=64, config=WHOLE,
                     rng=np.random.default_rng(0))  # fmt: skip
    with pytest.raises(ValueError, match="scale_min"):
        AugmentConfig(scale_min=0)
