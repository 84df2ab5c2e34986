"""Feature extractor and CAM sources, checked against timm's own code paths and scikit-learn."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from sklearn.decomposition import PCA
from torch.nn import functional as nnf

from autosod.io.decode import read_image, resize_to_input
from autosod.models.backbones import FeatureExtractor, build_model
from autosod.models.cams import CAM_SOURCES
from autosod.models.config import CAM_NAMES, BackboneConfig
from autosod.models.weights import WeightsError

SORREL = 339  # ImageNet class index of "sorrel" (a chestnut horse)


def _images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random uint8 images (B, S, S, 3): a bright disc on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = rng.integers(0, 80, size=(count, size, size, 3)).astype(np.uint8)
    for b in range(count):
        cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (size // 5) ** 2
        out[b][disc] = rng.integers(150, 255, size=3)
    return out


@pytest.fixture(scope="module")
def lite0() -> FeatureExtractor:
    # stages and C pinned: the tests below check the concatenation and CAMs for this setting
    return FeatureExtractor(BackboneConfig(model_name="efficientnet_lite0", input_size=128,
                                           stages=(1, 2, 3), top_classes=5))


def test_features_shape_and_unit_norm(lite0: FeatureExtractor) -> None:
    out = lite0(_images(2, 128))
    assert out.grid == (8, 8)
    assert out.feats.shape == (2, 64, 24 + 40 + 112)
    assert out.feats.dtype == torch.float32
    assert torch.allclose(out.feats.norm(dim=-1), torch.ones(2, 64), atol=1e-5)
    assert out.cams.shape == (2, 5, 64) and bool((out.cams >= 0).all())


def _timm_reference_feats(
    extractor: FeatureExtractor, images: np.ndarray, stages: tuple[int, ...]
) -> torch.Tensor:
    """The concatenation written out from timm's features_only model: each stage unit-normalised,
    average-pooled (or, when coarser, bilinearly upsampled) to the 8 x 8 grid of 128 px,
    normalised again, concatenated and divided by sqrt(number of stages)."""
    reference = timm.create_model(extractor.config.model_name, features_only=True,
                                  out_indices=stages)
    reference.load_state_dict(extractor.model.state_dict(), strict=False)
    with torch.no_grad():
        outputs = reference.eval()(extractor.preprocess(images))
    parts = []
    for stage in outputs:
        unit = stage / stage.norm(dim=1, keepdim=True)
        if unit.shape[-1] >= 8:
            resized = nnf.avg_pool2d(unit, unit.shape[-1] // 8)
        else:
            resized = nnf.interpolate(unit, size=(8, 8), mode="bilinear", align_corners=False)
        parts.append(resized / resized.norm(dim=1, keepdim=True))
    return torch.cat(parts, dim=1).flatten(2).transpose(1, 2) / math.sqrt(len(stages))


def test_stage_concatenation_matches_timm_features_only(lite0: FeatureExtractor) -> None:
    images = _images(2, 128, seed=1)  # strides 4, 8, 16 -> the stride-16 grid
    expected = _timm_reference_feats(lite0, images, (1, 2, 3))
    assert torch.allclose(lite0(images).feats, expected, atol=1e-5)


def test_default_stages_match_timm_features_only() -> None:
    """The default backbone and stages 0-4 (strides 2-32): the stride-32 stage is upsampled to
    the grid."""
    extractor = FeatureExtractor(BackboneConfig(input_size=128))
    images = _images(2, 128, seed=3)
    out = extractor(images)
    assert out.feats.shape == (2, 64, 16 + 24 + 48 + 120 + 352)  # EfficientNet-Lite2
    expected = _timm_reference_feats(extractor, images, (0, 1, 2, 3, 4))
    assert torch.allclose(out.feats, expected, atol=1e-5)


def test_classifier_cam_matches_forward_features_and_head(lite0: FeatureExtractor) -> None:
    images = _images(2, 128, seed=2)
    model = lite0.model
    with torch.no_grad():
        x = lite0.preprocess(images)
        final = model.forward_features(x)  # (B, 1280, 4, 4) before pooling
        top = model(x).topk(5, dim=1).indices
        maps = torch.einsum("bcd,bdhw->bchw", model.classifier.weight[top], final).relu()
        expected = nnf.interpolate(maps, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(lite0(images).cams, expected.flatten(2), atol=1e-4)


def _with_cam(extractor: FeatureExtractor, cam: str) -> FeatureExtractor:
    """The same loaded model with another CAM source (saves building it again)."""
    other = copy.copy(extractor)
    other.config = dataclasses.replace(extractor.config, cam=cam)
    return other


def test_pca_cam_matches_scikit_learn(lite0: FeatureExtractor) -> None:
    extractor = _with_cam(lite0, "pca")
    out = extractor(_images(2, 128, seed=3))
    for b in range(2):
        feats = out.feats[b].double().numpy()
        proj = PCA(n_components=1).fit_transform(feats)[:, 0]
        candidates = [(p - p.min()) / (p.max() - p.min()) for p in (proj, -proj)]
        expected = min(candidates, key=lambda c: c.sum())  # the smaller activation mass
        assert np.allclose(out.cams[b, 0].numpy(), expected, atol=1e-4)


def test_unknown_cam_lists_valid_names() -> None:
    with pytest.raises(
        ValueError, match="cam must be one of \\['attention', 'classifier', 'pca'\\]"
    ):
        BackboneConfig(cam="gradcam")


def test_cam_sources_implement_exactly_the_configurable_names() -> None:
    """The torch-free config validates against CAM_NAMES; every name needs an implementation."""
    assert set(CAM_SOURCES) == set(CAM_NAMES) == {"attention", "classifier", "pca"}


def test_attention_cam_needs_a_vit(lite0: FeatureExtractor) -> None:
    extractor = _with_cam(lite0, "attention")
    with pytest.raises(ValueError, match="needs a ViT with a CLS token"):
        extractor(_images(1, 128))


def test_wrong_image_shape_is_refused(lite0: FeatureExtractor) -> None:
    with pytest.raises(ValueError, match=r"uint8 \(B, 128, 128, 3\).*got shape \(1, 64, 64, 3\)"):
        lite0(np.zeros((1, 64, 64, 3), dtype=np.uint8))


def _save_tiny_vit(path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = timm.create_model("test_vit", pretrained=False).state_dict()  # trained at 160 px
    torch.save(state, path)
    return state


def _vit_config(weights: str, **options) -> BackboneConfig:
    return BackboneConfig(model_name="test_vit", weights=weights, input_size=64, **options)


def test_vit_from_local_file_with_attention_cam(tmp_path: Path) -> None:
    state = _save_tiny_vit(tmp_path / "vit.pth")
    extractor = FeatureExtractor(_vit_config(str(tmp_path / "vit.pth"), cam="attention"))
    loaded = extractor.model.state_dict()
    assert torch.equal(loaded["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])
    assert loaded["pos_embed"].shape[1] == 1 + 4 * 4  # resampled from 10 x 10 to 4 x 4
    images = _images(2, 64, seed=4)
    out = extractor(images)
    assert out.grid == (4, 4) and out.feats.shape == (2, 16, extractor.model.embed_dim)
    # Reference: timm's own non-fused attention, probabilities captured at attn_drop.
    attn = extractor.model.blocks[-1].attn
    attn.fused_attn, captured = False, {}
    hook = attn.attn_drop.register_forward_hook(lambda m, a, o: captured.update(p=o))
    with torch.no_grad():
        extractor.model(extractor.preprocess(images))
    hook.remove()
    cls = captured["p"][:, :, 0, 1:].mean(dim=1)
    low, high = cls.amin(1, keepdim=True), cls.amax(1, keepdim=True)
    assert torch.allclose(out.cams[:, 0], (cls - low) / (high - low), atol=1e-5)


def test_vit_from_s3(s3: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs

    monkeypatch.setenv("AUTOSOD_CACHE", str(tmp_path / "cache"))
    state = _save_tiny_vit(tmp_path / "vit.pth")
    fs = s3fs.S3FileSystem(**s3)
    fs.mkdir("models")
    fs.put_file(str(tmp_path / "vit.pth"), "models/dino/vit.pth")
    config = _vit_config("s3://models/dino/vit.pth", cam="pca", storage_options=s3)
    model, mean, std = build_model(config)
    assert torch.equal(model.state_dict()["head.weight"], state["head.weight"])
    assert mean == (0.5, 0.5, 0.5) and std == (0.5, 0.5, 0.5)  # test_vit's pretrained config


def test_vit_with_wrong_architecture_names_the_mismatch(tmp_path: Path) -> None:
    torch.save(timm.create_model("test_vit2").state_dict(), tmp_path / "other.pth")
    with pytest.raises(WeightsError, match=r"weights '.*other\.pth'.*(lack|has shape|carry)"):
        build_model(_vit_config(str(tmp_path / "other.pth")))


def test_lite0_predicts_sorrel_on_weizmann_horses(shared_data: Path) -> None:
    folder = shared_data / "weizmann-horse" / "images"
    paths = sorted(folder.glob("*.jpg"))[:20]
    assert len(paths) == 20
    # the weights check of docs/quality.md ("Normalisation"), at the 320 px it was measured at
    extractor = FeatureExtractor(BackboneConfig(model_name="efficientnet_lite0", input_size=320))
    images = np.stack(
        [resize_to_input(read_image(str(p), max_pixels=10**8).rgb, 320) for p in paths]
    )
    predicted = extractor.logits(images).argmax(dim=1)
    hits = int((predicted == SORREL).sum())
    assert hits >= 15, f"only {hits} / 20 horses classified as sorrel: {predicted.tolist()}"
