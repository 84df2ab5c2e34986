"""The packaged EfficientNet-Lite0/1/2 backbones on real horses, and TF-ported files by path:
the in-order mapping, the normalisation they need, and what happens when either is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from autosod.evaluation.pairing import read_gray
from autosod.io.decode import read_image, resize_to_input
from autosod.labeling.config import LabelerConfig
from autosod.labeling.labeler import PseudoLabeler
from autosod.models.backbones import FeatureExtractor, build_model
from autosod.models.config import BackboneConfig
from autosod.models.packaged import PACKAGED_WEIGHTS
from autosod.models.weights import WeightsError, load_state_dict, remap_in_order

SORREL = 339  # ImageNet class index of "sorrel" (a chestnut horse)
LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
SIZE = 192  # small enough for seconds; every Lite puts sorrel in its top 5 for 8 / 8 horses here


def _horses(shared_data: Path, count: int) -> list[Path]:
    paths = sorted((shared_data / "weizmann-horse" / "images").glob("*.jpg"))[:count]
    assert len(paths) == count
    return paths


def _inputs(paths: list[Path], size: int) -> np.ndarray:
    return np.stack([resize_to_input(read_image(str(p), max_pixels=10**8).rgb, size)
                     for p in paths])


def _sorrel_in_top5(extractor: FeatureExtractor, images: np.ndarray) -> int:
    top5 = extractor.logits(images).topk(5, dim=1).indices
    return int((top5 == SORREL).any(dim=1).sum())


@pytest.mark.parametrize("name", sorted(PACKAGED_WEIGHTS))
def test_packaged_file_maps_onto_timm_in_order(name: str) -> None:
    packaged = PACKAGED_WEIGHTS[name]
    state = load_state_dict(packaged.path())
    model = timm.create_model(packaged.model_name, pretrained=False)
    remapped = remap_in_order(state, model.state_dict())
    model.load_state_dict(remapped)  # strict: every key present, every shape equal
    pairs = dict(zip(state, remapped, strict=True))
    assert len(pairs) == (296 if name.endswith("lite0") else 386)
    assert pairs["_conv_stem.weight"] == "conv_stem.weight"
    assert pairs["_fc.weight"] == "classifier.weight"
    assert pairs["_blocks.0._depthwise_conv.weight"] == "blocks.0.0.conv_dw.weight"
    assert torch.equal(model.state_dict()["classifier.weight"], state["_fc.weight"])
    assert packaged.mean == packaged.std == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("model_name", LITES)
def test_each_packaged_backbone_labels_horses_with_its_weights(
    model_name: str, shared_data: Path
) -> None:
    """Labels 8 real horses offline with the backbone named alone; the weights are the trained
    ones: sorrel is in the classifier's top 5 for most horses, and for almost none with the
    same architecture untrained."""
    paths = _horses(shared_data, 8)
    labeler = PseudoLabeler(LabelerConfig(model_name=model_name, input_size=SIZE, device="cpu"))
    assert labeler.config.weights == "package:" + model_name.replace("_", "-")
    result = labeler.label_images([str(p) for p in paths])
    gts = [read_gray(str(p).replace("/images/", "/masks/")[:-4] + ".png") > 128 for p in paths]
    ious = [(m & g).sum() / (m | g).sum() for m, g in zip(result.masks, gts, strict=True)]
    assert [m.shape for m in result.masks] == [g.shape for g in gts]
    assert np.mean(ious) > 0.4, f"{model_name}: horse masks IoU {np.round(ious, 2)}"
    images = _inputs(paths, SIZE)
    trained = _sorrel_in_top5(labeler.extractor, images)
    torch.manual_seed(0)
    labeler.extractor.model = timm.create_model(model_name, pretrained=False).eval()
    untrained = _sorrel_in_top5(labeler.extractor, images)
    assert trained >= 6 and untrained <= 1, (
        f"{model_name}: sorrel in the top 5 for {trained} / 8 horses with the packaged weights, "
        f"{untrained} / 8 untrained")


def test_model_name_alone_resolves_its_packaged_weights() -> None:
    assert BackboneConfig(model_name="efficientnet_lite2").weights == "package:efficientnet-lite2"
    assert BackboneConfig(model_name="tf_efficientnet_lite1").weights == (
        "package:efficientnet-lite1")
    assert BackboneConfig().weights == "package:efficientnet-lite2"
    with pytest.raises(ValueError, match=r"no packaged weights fit 'resnet18'.*give the weights"):
        BackboneConfig(model_name="resnet18")
    with pytest.raises(ValueError, match=r"are for efficientnet_lite0, not 'efficientnet_lite2'; "
                                         r"use package:efficientnet-lite2"):
        BackboneConfig(model_name="efficientnet_lite2", weights="package:efficientnet-lite0")


@pytest.fixture(scope="module")
def lite1_file() -> str:
    """The TF-ported Lite1 file given by path, as a user who copied it would."""
    return str(PACKAGED_WEIGHTS["efficientnet-lite1"].path())


def test_tf_ported_file_by_path_needs_the_in_order_mapping(lite1_file: str) -> None:
    config = BackboneConfig(model_name="efficientnet_lite1", weights=lite1_file, input_size=128)
    with pytest.raises(WeightsError, match=r"lack the model's tensor 'conv_stem\.weight'; none "
                                           r"of the file's 386 .*--weights-mapping in-order"):
        build_model(config)


def test_tf_ported_file_by_path_loads_in_order_with_its_normalisation(
    lite1_file: str, shared_data: Path
) -> None:
    images = _inputs(_horses(shared_data, 2), 128)
    packaged = FeatureExtractor(BackboneConfig(model_name="efficientnet_lite1", input_size=128))
    by_path = FeatureExtractor(BackboneConfig(
        model_name="efficientnet_lite1", weights=lite1_file, weights_mapping="in-order",
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=128))
    for key, tensor in packaged.model.state_dict().items():
        assert torch.equal(by_path.model.state_dict()[key], tensor), key
    assert torch.equal(by_path.logits(images), packaged.logits(images))
    assert torch.equal(by_path(images).feats, packaged(images).feats)
    # Left unset, a file's normalisation is timm's for the model: ImageNet's, other inputs
    _, mean, std = build_model(BackboneConfig(
        model_name="efficientnet_lite1", weights=lite1_file, weights_mapping="in-order"))
    assert mean == pytest.approx((0.485, 0.456, 0.406)) and std == pytest.approx(
        (0.229, 0.224, 0.225))


def test_in_order_mapping_onto_another_architecture_names_the_first_mismatch(
    lite1_file: str,
) -> None:
    """Lite1 has Lite0's widths but more blocks: the first pair that differs is named."""
    config = BackboneConfig(model_name="efficientnet_lite0", weights=lite1_file,
                            weights_mapping="in-order", input_size=128)
    with pytest.raises(WeightsError, match=r"cannot remap in order: tensor \d+ '_blocks\.\d+\..*' "
                                           r"has shape .* but the model's 'blocks\..*' has"):
        build_model(config)


def test_packaged_source_refuses_a_wrong_normalisation() -> None:
    imagenet = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    with pytest.raises(ValueError, match=r"'package:efficientnet-lite2' were trained with "
                                         r"mean=\(0\.5, 0\.5, 0\.5\).*Leave mean and std unset"):
        LabelerConfig(model_name="efficientnet_lite2", **imagenet)
    with pytest.raises(ValueError, match="map onto efficientnet_lite2 in-order, not by-name"):
        BackboneConfig(weights_mapping="by-name")
    # the package's own values, given explicitly, are the default setting
    same = LabelerConfig(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), weights_mapping="in-order")
    assert same == LabelerConfig() and same.mean is None and same.weights_mapping is None
