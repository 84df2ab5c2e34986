"""Joint image + soft-mask augmentation for training (NumPy and Pillow; runs in CPU tasks).

Geometry touches image and mask alike: a random crop (a share of the image area in
[scale_min, scale_max], aspect ratio in [1/aspect_max, aspect_max] relative to the image's own)
resized to S x S, then a horizontal flip. At scale 1 and aspect 1 the crop is the whole image
squeezed to S x S, which is how evaluation and prediction see images (`resize_to_input`).
Photometric steps touch the image only: brightness, contrast and saturation factors (in a
random order), grayscale, Gaussian blur. Every draw comes from the caller's numpy Generator.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from autosod.training.config import AugmentConfig

__all__ = ["augment_pair", "crop_box", "jitter_colour"]

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as Pillow's "L" mode


def crop_box(
    height: int, width: int, *, config: AugmentConfig, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A random crop (left, top, right, bottom) inside a height x width image."""
    area = rng.uniform(config.scale_min, config.scale_max)
    log_aspect = math.log(config.aspect_max)
    aspect = math.exp(rng.uniform(-log_aspect, log_aspect))
    crop_w = min(width, max(1, round(width * math.sqrt(area * aspect))))
    crop_h = min(height, max(1, round(height * math.sqrt(area / aspect))))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    return left, top, left + crop_w, top + crop_h


def _gray(image: np.ndarray) -> np.ndarray:
    return image @ _LUMA  # (H, W) float32


def jitter_colour(
    image: np.ndarray, *, config: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (H, W, 3): brightness, contrast, saturation, grayscale."""
    out = image.astype(np.float32)
    steps = rng.permutation(3)
    factors = (
        rng.uniform(-1, 1, size=3)
        * np.array([config.brightness, config.contrast, config.saturation], np.float32)
        + 1
    )
    for step in steps:
        factor = np.float32(factors[step])
        if step == 0:
            out = out * factor
        elif step == 1:
            mean = _gray(out).mean()
            out = (out - mean) * factor + mean
        else:
            gray = _gray(out)[..., None]
            out = (out - gray) * factor + gray
        out = out.clip(0, 255)
    if rng.random() < config.grayscale_prob:
        out = np.repeat(_gray(out)[..., None], 3, axis=2)
    return out.round().astype(np.uint8)


def augment_pair(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    size_px: int,
    config: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """image uint8 (H, W, 3), soft mask uint8 (H, W) -> (S, S, 3) uint8 image, (S, S) uint8 mask.

    The mask may have another size than the image (e.g. the pseudo-mask at the original size
    and a JPEG decoded at a reduced scale): the crop is taken at the same relative place in both.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be uint8 (H, W), got {mask.dtype} {mask.shape}")
    height, width = image.shape[:2]
    left, top, right, bottom = crop_box(height, width, config=config, rng=rng)
    scale_y, scale_x = mask.shape[0] / height, mask.shape[1] / width
    mask_box = (left * scale_x, top * scale_y, right * scale_x, bottom * scale_y)
    size = (size_px, size_px)
    out_image = Image.fromarray(image).resize(size, Image.BILINEAR, box=(left, top, right, bottom))
    out_mask = np.asarray(Image.fromarray(mask).resize(size, Image.BILINEAR, box=mask_box))
    if rng.random() < config.blur_prob:
        sigma = rng.uniform(0.1, config.blur_sigma_max_px)
        out_image = out_image.filter(ImageFilter.GaussianBlur(radius=sigma))
    out = jitter_colour(np.asarray(out_image), config=config, rng=rng)
    if rng.random() < config.flip_prob:
        out, out_mask = out[:, ::-1], out_mask[:, ::-1]
    return np.ascontiguousarray(out), np.ascontiguousarray(out_mask)
