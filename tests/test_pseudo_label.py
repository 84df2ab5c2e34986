"""Single-process pseudo-labeller: default backbone + POTNet head, masks at the original size."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autosod.io.decode import resize_to_input
from autosod.labeling.config import LabelerConfig
from autosod.labeling.labeler import (
    PseudoLabeler,
    check_weights,
    upsample_grid,
)
from autosod.models.config import BackboneConfig
from autosod.models.weights import WeightsError
from autosod.potnet import PotnetConfig, run_head
from autosod.potnet.mask_quality import mask_quality

SIZE = 128


def _scene(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 (H, W, 3): a bright ellipse (the object) on a dark noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    image = rng.integers(0, 70, size=(height, width, 3)).astype(np.uint8)
    inside = ((yy - height / 2) / (height / 4)) ** 2 + ((xx - width / 2) / (width / 5)) ** 2 < 1
    image[inside] = rng.integers(160, 255, size=3)
    return image


@pytest.fixture(scope="module")
def labeler() -> PseudoLabeler:
    return PseudoLabeler(LabelerConfig(input_size=SIZE, device="cpu"))


def test_config_is_plain_and_replaceable() -> None:
    config = LabelerConfig()
    assert config.weights == "package:efficientnet-lite2" and config.input_size == 384
    assert config.backbone() == dataclasses.replace(BackboneConfig(), device="auto")
    assert dataclasses.asdict(config)["potnet"]["k_low"] == PotnetConfig().k_low
    changed = dataclasses.replace(config, cam="pca", potnet=PotnetConfig(k_low=2))
    assert changed.backbone().cam == "pca" and changed.potnet.k_low == 2
    with pytest.raises(ValueError, match="cam must be one of"):
        LabelerConfig(cam="saliency")
    with pytest.raises(TypeError, match="potnet must be a PotnetConfig"):
        LabelerConfig(potnet={"k_low": 2})


def test_upsample_grid_of_a_ramp_is_the_bilinear_formula() -> None:
    grid = (4, 5)
    ramp = torch.arange(20, dtype=torch.float32).reshape(grid) / 19  # v = (5 i + j) / 19
    out = upsample_grid(ramp.flatten(), grid, (8, 15)).numpy()
    # align_corners=False: source coordinate (k + 0.5) / scale - 0.5, clamped to the border
    rows = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    cols = np.clip((np.arange(15) + 0.5) / 3 - 0.5, 0, 4)
    expected = (5 * rows[:, None] + cols[None, :]) / 19
    assert np.allclose(out, expected, atol=1e-6)


def test_label_batch_returns_masks_at_original_sizes(labeler: PseudoLabeler) -> None:
    scenes = [_scene(90, 160, 0), _scene(200, 120, 1)]
    images = np.stack([resize_to_input(s, SIZE) for s in scenes])
    result = labeler.label_batch(images, [s.shape[:2] for s in scenes])
    assert len(result) == 2
    for scene, soft, mask in zip(scenes, result.softs, result.masks, strict=True):
        assert soft.shape == mask.shape == scene.shape[:2]
        assert soft.dtype == np.uint8 and mask.dtype == bool
        assert np.array_equal(mask, soft >= 128)  # soft is round(255 s), mask is s >= 0.5
    for name in ("fg_fraction", "mean_entropy", "transport_cost", "mask_quality"):
        values = getattr(result, name)
        assert values.shape == (2,) and values.dtype == np.float32, name
        assert np.isfinite(values).all(), name
    assert np.allclose(result.fg_fraction, [m.mean() for m in result.masks])


def test_label_batch_agrees_with_the_head_on_the_grid(labeler: PseudoLabeler) -> None:
    images = np.stack([resize_to_input(_scene(SIZE, SIZE, 2), SIZE)])
    features = labeler.extractor(images)
    head = run_head(features.feats.numpy(), features.cams.numpy(), labeler.config.potnet)
    result = labeler.label_features(features, [(SIZE // 16, SIZE // 16)])  # the grid itself
    assert np.array_equal(result.masks[0].ravel(), head.mask[0])
    assert np.allclose(result.softs[0].ravel(), np.round(head.soft[0] * 255), atol=1)
    grid_quality = mask_quality(features.feats.numpy(), head.mask, features.grid)
    assert np.allclose(result.mask_quality, grid_quality, atol=1e-6)  # the store keeps this score
    assert np.allclose(result.transport_cost, head.transport_cost)


def test_label_images_paths_and_arrays_match_label_batch(
    labeler: PseudoLabeler, tmp_path: Path
) -> None:
    scenes = [_scene(100, 140, 3), _scene(64, 64, 4), _scene(150, 90, 5)]
    paths = []
    for index, scene in enumerate(scenes):
        paths.append(tmp_path / f"scene{index}.png")
        Image.fromarray(scene).save(paths[-1])
    from_paths = labeler.label_images(paths, batch_size=2)
    from_arrays = labeler.label_images(scenes, batch_size=3)
    direct = labeler.label_batch(
        np.stack([resize_to_input(s, SIZE) for s in scenes]), [s.shape[:2] for s in scenes]
    )
    assert len(from_paths) == len(from_arrays) == 3
    for got, want in zip(from_arrays.softs, direct.softs, strict=True):
        assert np.array_equal(got, want)  # same batch: identical
    # Batches of 2 + 1: convolutions differ in the last float bits (about 1e-6 on the
    # features), so the 8-bit soft maps may differ by a level.
    for got, want in zip(from_paths.softs, direct.softs, strict=True):
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want).max() <= 2
    assert np.allclose(from_paths.mask_quality, direct.mask_quality, atol=1e-3)


def test_label_images_names_the_bad_input(labeler: PseudoLabeler, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"cannot label '.*broken\.jpg'"):
        labeler.label_images([bad])
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\)"):
        labeler.label_images([np.zeros((10, 10), dtype=np.uint8)])
    with pytest.raises(ValueError, match="got 1 sizes for 2 images"):
        labeler.label_batch(np.zeros((2, SIZE, SIZE, 3), dtype=np.uint8), [(10, 10)])


def test_check_weights_fails_on_a_missing_file(tmp_path: Path) -> None:
    check_weights(LabelerConfig())  # the packaged default loads offline
    with pytest.raises(WeightsError, match="does not exist"):
        check_weights(LabelerConfig(weights=str(tmp_path / "nope.pth")))


# Baselines of ../shared/data/README.md on the same backbone: Ncut bipartition mean IoU.
NCUT_IOU = {"weizmann-horse": 0.41, "grabcut": 0.37}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["weizmann-horse", "grabcut"])
def test_default_pseudo_masks_beat_ncut_and_the_cam_alone(shared_data: Path, name: str) -> None:
    from autosod.benchmarks.pseudo_quality import pseudo_mask_quality

    row = pseudo_mask_quality(str(shared_data / name), LabelerConfig(device="cpu"))
    assert row["count"] > 0
    assert row["iou"] > NCUT_IOU[name], row
    assert row["iou"] > row["cam_iou"], row  # the CAM alone, measured in the same run
