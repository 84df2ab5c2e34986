"""Confidence score and scoring of the quality ablation: known answers and sklearn references."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import jaccard_score

from autosod.benchmarks.quality import full_size_maps, ranked_halves, score_maps
from autosod.benchmarks.quality_features import FeatureSet
from autosod.benchmarks.quality_variants import VariantMaps
from autosod.potnet.mask_quality import border_share, feature_separation, mask_quality
from tests.synthetic_scenes import make_batch


def test_ranked_halves_known_answer() -> None:
    confidence = np.array([0.9, 0.1, 0.8, 0.2, 0.5])
    halves = ranked_halves(confidence, np.array([1, 0, 0.5, 0.25, 0.3]))
    assert halves["confident_count"] == 2 and halves["other_count"] == 3
    assert halves["confident_iou"] == pytest.approx(0.75)
    assert halves["other_iou"] == pytest.approx((0 + 0.25 + 0.3) / 3)
    with pytest.raises(ValueError, match="need >= 2 images"):
        ranked_halves(np.array([1.0]), np.array([1.0]))


def test_border_share_and_separation_known_answers() -> None:
    mask = np.zeros((1, 4, 4), bool)
    mask[0, :, 0] = True  # the left column: 4 of the 12 border cells
    assert border_share(mask.reshape(1, -1), (4, 4))[0] == pytest.approx(4 / 12)
    feats = np.zeros((2, 16, 3), np.float32)
    feats[:, :, 0] = 1  # every position alike: no separation
    feats[1, mask.reshape(-1), :] = [0, 1, 0]  # image 1: the mask is orthogonal to the rest
    separation = feature_separation(feats, np.repeat(mask.reshape(1, -1), 2, axis=0))
    assert separation == pytest.approx([0.0, 1.0])
    assert mask_quality(feats, np.zeros((2, 16), bool), (4, 4)) == pytest.approx([0, 0])


def test_mask_quality_ranks_true_masks_above_frame_masks() -> None:
    feats, _, masks = make_batch(list(range(8)), grid=16)
    frame = np.zeros((16, 16), bool)
    frame[:4], frame[:, :4] = True, True  # a wrong mask glued to the image border
    pred = masks.copy()
    pred[4:] = frame.reshape(-1)
    ious = (pred & masks).sum(1) / (pred | masks).sum(1)
    halves = ranked_halves(mask_quality(feats, pred, (16, 16)), ious)
    assert halves["confident_iou"] == pytest.approx(1.0), "true masks must rank first"
    assert halves["other_iou"] < 0.5


def test_score_maps_iou_matches_sklearn(tmp_path) -> None:
    rng = np.random.default_rng(0)
    sizes = [(30, 40), (25, 25), (48, 32)]
    uris = []
    for index, (h, w) in enumerate(sizes):
        gt = np.zeros((h, w), np.uint8)
        gt[h // 4 : 3 * h // 4, w // 3 :] = 255
        uris.append(str(tmp_path / f"{index}.png"))
        Image.fromarray(gt).save(uris[-1])
    features = FeatureSet(
        name="toy", feats=rng.standard_normal((3, 16, 4)).astype(np.float32),
        cams=np.ones((3, 1, 16), np.float32), sizes=np.array(sizes), grid=(4, 4),
        stems=["0", "1", "2"], gt_uris=uris, image_uris=uris,
    )
    soft = rng.random((3, 16)).astype(np.float32)
    maps = VariantMaps(soft, soft.mean(axis=1))
    gts = [features.gt(i) for i in range(3)]
    scores = score_maps(features, maps, gts, full=False)
    for i, pred in enumerate(full_size_maps(features, soft)):
        expected = jaccard_score(gts[i].ravel(), (pred > 0.5).ravel())
        assert scores.iou_per_image[i] == pytest.approx(expected), f"image {i}"
    assert scores.metrics["iou"] == pytest.approx(scores.iou_per_image.mean())
    assert 0 <= scores.metrics["max_f"] <= 1 and scores.metrics["count"] == 3
