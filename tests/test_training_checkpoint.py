"""Checkpoints: load back with weights_only=True, resume exactly, refuse bad files clearly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from autosod.models.autosod_net import build_network
from autosod.training.checkpoint import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    load_network,
    restore_rng,
    save_checkpoint,
)
from autosod.training.config import ModelConfig, TrainConfig
from autosod.training.loop import build_optimizer, set_train_mode, train_step

TINY = TrainConfig(
    model=ModelConfig(
        input_size_px=64, pixel_dim=16, hidden_dim=32, decoder_layers=2, queries=3, heads=2,
        ffn_dim=32, dropout=0.1,
    ),
    warmup_steps=2,
    freeze_bn=False,
)  # fmt: skip


def _batch(rng: np.random.Generator) -> dict[str, np.ndarray]:
    image = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    mask = (rng.random((2, 64, 64)) > 0.5).astype(np.uint8) * 255
    return {"image": image, "mask": mask, "weight": rng.random(2).astype(np.float32)}


def _trained(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    net = build_network(TINY.model, pretrained=False)
    optimizer, scheduler = build_optimizer(net, TINY, total_steps=10)
    rng = np.random.default_rng(0)
    for _ in range(2):
        train_step(net, _batch(rng), optimizer, scheduler, TINY)
    path = save_checkpoint(
        tmp_path / "run" / "last.pt",
        model=net,
        optimizer=optimizer,
        scheduler=scheduler,
        epoch=1,
        step=2,
        rng=capture_rng(rng),
        metadata={"val_loss": 0.5},
    )
    return path, net


def test_checkpoint_loads_with_weights_only_and_predicts_the_same(tmp_path: Path) -> None:
    path, net = _trained(tmp_path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == "autosod-checkpoint" and raw["epoch"] == 1 and raw["step"] == 2
    loaded = load_network(path)
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    net.eval()
    assert torch.equal(net.soft_masks(images, flip_average=True),
                       loaded.soft_masks(images, flip_average=True))  # fmt: skip
    checkpoint = load_checkpoint(path, expect=TINY.model)
    assert checkpoint.metadata == {"val_loss": 0.5} and checkpoint.model_config == TINY.model
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind


def test_resume_continues_exactly(tmp_path: Path) -> None:
    """Three steps straight equal two steps, a checkpoint, a fresh process state and one step."""
    path, net = _trained(tmp_path)
    checkpoint = load_checkpoint(path, expect=TINY.model)
    optimizer, scheduler = build_optimizer(net, TINY, total_steps=10)
    optimizer.load_state_dict(checkpoint.optimizer_state)
    scheduler.load_state_dict(checkpoint.scheduler_state)
    rng = np.random.default_rng(123)
    restore_rng(checkpoint.rng, rng)
    straight = train_step(net, _batch(rng), optimizer, scheduler, TINY)  # step 3, uninterrupted

    torch.manual_seed(99)  # another process: other RNG states, fresh objects, file read again
    checkpoint = load_checkpoint(path, expect=TINY.model)
    resumed = build_network(TINY.model, pretrained=False)
    resumed.load_state_dict(checkpoint.model_state)
    set_train_mode(resumed, freeze_bn=TINY.freeze_bn)
    optimizer2, scheduler2 = build_optimizer(resumed, TINY, total_steps=10)
    optimizer2.load_state_dict(checkpoint.optimizer_state)
    scheduler2.load_state_dict(checkpoint.scheduler_state)
    rng2 = np.random.default_rng(7)
    restore_rng(checkpoint.rng, rng2)
    again = train_step(resumed, _batch(rng2), optimizer2, scheduler2, TINY)
    assert again == straight  # same batch, same dropout draws, same lr, same loss
    for (name, a), b in zip(net.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def _message(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_other_architecture_is_refused(tmp_path: Path) -> None:
    path, _ = _trained(tmp_path)
    other = dataclasses.replace(TINY.model, queries=5)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, expect=other)
    assert str(path) in _message(err) and "'queries': (3, 5)" in str(err.value)
    # input size and initial weights are not architecture: these load
    same = dataclasses.replace(TINY.model, input_size_px=128, weights="hub")
    assert load_checkpoint(path, expect=same).epoch == 1


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_truncated_file_is_refused(tmp_path: Path, keep: float) -> None:
    path, _ = _trained(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated or damaged") as err:
        load_checkpoint(path)
    assert str(path) in _message(err)


def test_damaged_archive_is_refused(tmp_path: Path) -> None:
    path, _ = _trained(tmp_path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(4096)  # zeroed block inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or damaged") as err:
        load_checkpoint(path)
    assert str(path) in _message(err)


class _Payload:
    """A Python object: loading it would need the full pickle machinery."""

    def __init__(self) -> None:
        self.weights = torch.zeros(2)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "autosod-checkpoint", "model": _Payload()}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects") as err:
        load_checkpoint(path)
    assert str(path) in _message(err)


def test_missing_and_foreign_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    foreign = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="not an autosod checkpoint") as err:
        load_network(foreign)
    assert str(foreign) in _message(err)
    assert issubclass(CheckpointError, ValueError)
