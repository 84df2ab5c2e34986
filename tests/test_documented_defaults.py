"""The defaults the documentation states are the code's defaults.

docs/quality.md's "Defaults now" paragraph states the defaults in use, each change from
potnet.md's backed by a table; potnet.md (beside the checkout, in ../shared/docs) states the rest.
These tests read the documents, so a default changed without its documentation (or the reverse)
fails here. Defaults that no document states are not restated in tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autosod.labeling.config import LabelerConfig
from autosod.models.config import BackboneConfig
from autosod.potnet import PotnetConfig

QUALITY_MD = Path(__file__).resolve().parents[1] / "docs" / "quality.md"
POTNET_MD = Path(__file__).resolve().parents[1].parent / "shared" / "docs" / "potnet.md"


def _defaults_now() -> str:
    """docs/quality.md's "Defaults now (...): ..." paragraph on one line."""
    match = re.search(r"^Defaults now \([^)]*\):(.*?)\n\n", QUALITY_MD.read_text(), re.S | re.M)
    assert match, "docs/quality.md has lost its 'Defaults now (date): ...' paragraph"
    return " ".join(match.group(1).replace("**", "").split())  # emphasis is not content


def _stated(pattern: str, text: str, where: str) -> tuple[str, ...]:
    match = re.search(pattern, text)
    assert match, f"{where} no longer states {pattern!r}:\n{text[:600]}"
    return match.groups()


@pytest.mark.parametrize("head", [PotnetConfig(), LabelerConfig().potnet],
                         ids=["PotnetConfig", "LabelerConfig.potnet"])
def test_head_defaults_are_those_of_quality_md(head: PotnetConfig) -> None:
    text, where = _defaults_now(), "docs/quality.md"
    k_low, k_high = _stated(r"\bk (\d+) \+ (\d+)\b", text, where)
    (eps,) = _stated(r"ε ([\d.]+)", text, where)
    (temperature,) = _stated(r"\bt ([\d.]+)\b", text, where)
    (quantile,) = _stated(r"split quantile ([\d.]+)", text, where)
    (sinkhorn,) = _stated(r"(\d+) Sinkhorn iterations", text, where)
    assert (head.k_low, head.k_high) == (int(k_low), int(k_high))
    assert head.eps == float(eps) and head.temperature == float(temperature)
    assert head.split_quantile == float(quantile) and head.sinkhorn_iters == int(sinkhorn)


@pytest.mark.parametrize("backbone", [BackboneConfig(), LabelerConfig().backbone()],
                         ids=["BackboneConfig", "LabelerConfig.backbone"])
def test_backbone_defaults_are_those_of_quality_md(backbone: BackboneConfig) -> None:
    text, where = _defaults_now(), "docs/quality.md"
    name, weights = _stated(r"offline ([\w-]+) \(`(package:[\w-]+)`\)", text, where)
    top, cam = _stated(r"top-(\d+) (\w+) CAM", text, where)
    first, last = _stated(r"feature stages (\d)–(\d)", text, where)
    (size,) = _stated(r"input (\d+) px", text, where)
    assert backbone.model_name == name.lower().replace("-", "_")  # EfficientNet-Lite0
    assert backbone.weights == weights
    assert (backbone.top_classes, backbone.cam) == (int(top), cam)
    assert backbone.stages == tuple(range(int(first), int(last) + 1))
    assert backbone.input_size == int(size)


def test_other_head_defaults_are_those_of_potnet_md() -> None:
    """The head's values that docs/quality.md did not change: potnet.md's steps 3, 4 and 8."""
    if not POTNET_MD.is_file():
        pytest.skip(f"potnet.md not found at {POTNET_MD}")
    text, where = " ".join(POTNET_MD.read_text().split()), "potnet.md"
    (tau,) = _stated(r"τ \(default ([\d.]+)\)", text, where)
    k_low, iters = _stated(r"k_low clusters \(default (\d+)\).*?fixed number of iterations "
                           r"\(default (\d+)\)", text, where)
    (threshold,) = _stated(r"then threshold at ([\d.]+) for the binary mask", text, where)
    head = PotnetConfig()
    assert head.tau == float(tau) and head.k_low == int(k_low)
    assert head.kmeans_iters == int(iters) and head.mask_threshold == float(threshold)
