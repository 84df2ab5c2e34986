"""Which sample each worker trains on at each step, and its augmentation, decided by design.

Every draw depends on (seed, epoch) or (seed, epoch, image_id) and never on the worker count,
the worker's rank or the order in which tasks finish, so that W workers with a global batch of
B see exactly the samples, crops, flips and colours that one worker with batch B sees:

- `epoch_steps`: the training ids (sorted) are permuted by (seed, epoch); step s takes the
  permuted positions [s * B, (s + 1) * B); the last incomplete batch is dropped (every worker
  takes the same number of steps). Worker r of W takes the r-th contiguous B / W of each step.
- `sample_rng`: each sample's augmentation generator, seeded by (seed, epoch, image_id).

NumPy and Pillow only; the job runs `augment_samples` in Ray Data CPU tasks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from autosod.io.decode import resize_to_input
from autosod.training.augment import augment_pair
from autosod.training.config import AugmentConfig

__all__ = ["augment_samples", "epoch_steps", "sample_rng", "steps_per_epoch", "whole_view"]


def steps_per_epoch(count: int, batch_size: int) -> int:
    """Full global batches in an epoch of `count` training samples."""
    return count // batch_size


def epoch_steps(
    count: int, *, seed: int, epoch: int, batch_size: int, world_size: int, rank: int
) -> np.ndarray:
    """(steps, batch_size / world_size) int64: indices into the sorted training ids that worker
    `rank` trains on at each step of `epoch`."""
    if batch_size % world_size:
        raise ValueError(f"batch_size ({batch_size}) must be divisible by world_size "
                         f"({world_size})")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    steps = steps_per_epoch(count, batch_size)
    order = np.random.default_rng([seed, epoch]).permutation(count)[: steps * batch_size]
    per_rank = batch_size // world_size
    return order.reshape(steps, world_size, per_rank)[:, rank, :].astype(np.int64)


def _id_words(image_id: str) -> list[int]:
    digest = hashlib.sha256(str(image_id).encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "big") for i in range(0, 16, 4)]


def sample_rng(seed: int, epoch: int, image_id: str) -> np.random.Generator:
    """The augmentation generator of one sample in one epoch (independent of worker and step)."""
    return np.random.default_rng([seed, epoch, *_id_words(image_id)])


def augment_samples(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    image_ids: Sequence[str],
    *,
    seed: int,
    epoch: int,
    size_px: int,
    config: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Each (image, soft mask) augmented with its own `sample_rng` -> images (B, S, S, 3) uint8
    and masks (B, S, S) uint8."""
    out_images, out_masks = [], []
    for image, mask, image_id in zip(images, masks, image_ids, strict=True):
        rng = sample_rng(seed, epoch, image_id)
        pair = augment_pair(image, mask, size_px=size_px, config=config, rng=rng)
        out_images.append(pair[0])
        out_masks.append(pair[1])
    return np.stack(out_images), np.stack(out_masks)


def whole_view(image: np.ndarray, mask: np.ndarray, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The validation view: the whole image squeezed to S x S (as prediction sees it; bicubic)
    and its soft mask at the same size (bilinear)."""
    squeezed = np.asarray(Image.fromarray(mask).resize((size_px, size_px),
                                                       Image.Resampling.BILINEAR))
    return resize_to_input(image, size_px), squeezed
