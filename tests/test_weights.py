"""Weight sources: local files, S3 (moto), refusal of pickles, key mapping (the packaged
EfficientNet-Lites: tests/test_packaged_backbones.py)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from autosod.models.weights import (
    WeightsError,
    check_state_dict,
    load_state_dict,
    remap_in_order,
    resolve_weights,
)


class _WritesMarker:
    """A pickle payload: unpickling it calls open(marker, "w"), creating the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_remap_in_order_renames_by_position() -> None:
    source = OrderedDict(a=torch.zeros(2, 3), b=torch.ones(4))
    target = OrderedDict(x=torch.empty(2, 3), y=torch.empty(4))
    out = remap_in_order(source, target)
    assert list(out) == ["x", "y"]
    assert out["x"] is source["a"] and out["y"] is source["b"]


def test_remap_in_order_names_first_shape_mismatch() -> None:
    source = OrderedDict(a=torch.zeros(2), b=torch.zeros(5), c=torch.zeros(7))
    target = OrderedDict(x=torch.empty(2), y=torch.empty(6), z=torch.empty(8))
    with pytest.raises(WeightsError, match=r"tensor 1 'b' has shape \(5,\).*'y' has \(6,\)"):
        remap_in_order(source, target)


def test_remap_in_order_refuses_different_lengths_naming_the_unpaired_tensor() -> None:
    with pytest.raises(WeightsError, match=r"the file has 1 tensors, the model 2 \(the model's "
                                           r"tensor 1 'y' has no partner\)"):
        remap_in_order({"a": torch.zeros(1)}, {"x": torch.empty(1), "y": torch.empty(1)})
    with pytest.raises(WeightsError, match=r"tensor 1 'b' has shape \(3,\) but the model's 'y'"):
        remap_in_order({"a": torch.zeros(1), "b": torch.zeros(3), "c": torch.zeros(1)},
                       {"x": torch.empty(1), "y": torch.empty(1)})


def test_pickle_with_arbitrary_objects_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": _WritesMarker(marker)}, path)
    with pytest.raises(WeightsError, match=r"refused to load .*not a plain state dict"):
        load_state_dict(path)
    assert not marker.exists(), "loading the weights executed the pickled payload"
    # The payload is live: an unsafe load would have run it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_nested_checkpoint_is_not_a_plain_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save({"teacher": {"w": torch.zeros(1)}, "epoch": 3}, path)
    with pytest.raises(
        WeightsError, match=r"first keys \['teacher', 'epoch'\]\), not a plain state dict"
    ):
        load_state_dict(path)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match="holds a list"):
        load_state_dict(path)


def test_safetensors_file_loads(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(4.0)}, str(path))
    assert torch.equal(load_state_dict(path)["a"], torch.arange(4.0))


def test_check_state_dict_names_first_problem() -> None:
    target = {"a": torch.empty(2), "b": torch.empty(3)}
    check_state_dict({"a": torch.zeros(2), "b": torch.zeros(3)}, target, origin="f")
    with pytest.raises(WeightsError, match=r"'b' has shape \(4,\), the model expects \(3,\)"):
        check_state_dict({"a": torch.zeros(2), "b": torch.zeros(4)}, target, origin="f")
    with pytest.raises(WeightsError, match="lack the model's tensor 'b'"):
        check_state_dict({"a": torch.zeros(2)}, target, origin="f")
    with pytest.raises(WeightsError, match="first 'c'"):
        check_state_dict({**target, "c": torch.zeros(1)}, target, origin="f")


def test_resolve_weights_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError, match="valid: package:efficientnet-lite0"):
        resolve_weights("package:resnet-9000")
    with pytest.raises(WeightsError, match="no file to resolve"):
        resolve_weights("hub")


def test_resolve_weights_local_and_file_uri(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"a": torch.ones(1)}, path)
    assert resolve_weights(str(path)) == path
    assert resolve_weights(f"file://{path}") == path


def test_resolve_weights_downloads_from_s3_once(s3: dict, tmp_path: Path) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3)
    fs.mkdir("weights")
    local = tmp_path / "w.pth"
    torch.save({"a": torch.arange(3.0)}, local)
    fs.put_file(str(local), "weights/models/w.pth")
    cache = tmp_path / "cache"
    # endpoint from AWS_ENDPOINT_URL (set by the fixture), no storage options
    path = resolve_weights("s3://weights/models/w.pth", cache_dir=cache)
    assert path.parent == cache and path.name.endswith("w.pth")
    assert torch.equal(load_state_dict(path)["a"], torch.arange(3.0))
    fs.rm("weights/models/w.pth")
    with pytest.raises(WeightsError, match=r"not found at 's3://weights/models/w\.pth'"):
        resolve_weights("s3://weights/models/w.pth", storage_options=s3, cache_dir=cache)
