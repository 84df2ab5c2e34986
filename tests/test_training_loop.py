"""The torch training loop: steps, schedule, validation states that add up, BatchNorm freezing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autosod.evaluation.metrics import SodMetrics
from autosod.io.decode import read_image, resize_to_input
from autosod.models.autosod_net import build_network
from autosod.training.config import ModelConfig, TrainConfig, preset
from autosod.training.loop import (
    WarmupCosine,
    batch_tensors,
    build_optimizer,
    merge_validation_states,
    restore_schedule,
    set_train_mode,
    train_epoch,
    train_step,
    validate,
    validation_metrics,
)
from autosod.training.weighting import quality_weights

TINY = TrainConfig(
    model=ModelConfig(
        input_size_px=64, pixel_dim=16, hidden_dim=32, decoder_layers=2, queries=3, heads=2,
        ffn_dim=32,
    ),
    warmup_steps=0,
    flip_average=False,
)  # fmt: skip


def _batch(seed: int, count: int = 2, size: int = 64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (count, size, size, 3), dtype=np.uint8)
    mask = np.zeros((count, size, size), np.uint8)
    for b in range(count):
        top, left = rng.integers(0, size // 2, size=2)
        image[b, top : top + size // 2, left : left + size // 2] = 220
        mask[b, top : top + size // 2, left : left + size // 2] = 255
    return {"image": image, "mask": mask, "weight": np.ones(count, np.float32)}


def _horses(shared: Path, count: int, size: int) -> dict[str, np.ndarray]:
    folder = shared / "weizmann-horse"
    paths = sorted((folder / "images").iterdir())[:count]
    images, masks = [], []
    for path in paths:
        images.append(resize_to_input(read_image(str(path), max_pixels=10**8).rgb, size))
        gt = Image.open(folder / "masks" / f"{path.stem}.png").convert("L")
        masks.append(np.asarray(gt.resize((size, size), Image.BILINEAR)))
    return {
        "image": np.stack(images),
        "mask": np.stack(masks),
        "weight": np.ones(count, np.float32),
    }


def test_small_preset_learns_real_horses(shared_data: Path) -> None:
    """The small preset (at 96 px for speed) fits a handful of real images: the loss falls."""
    small = preset("small")
    config = dataclasses.replace(
        small, model=dataclasses.replace(small.model, input_size_px=96), warmup_steps=0,
        lr=1e-3, flip_average=False,
    )  # fmt: skip
    torch.manual_seed(0)
    batch = _horses(shared_data, count=2, size=96)
    net = build_network(config.model)
    optimizer, scheduler = build_optimizer(net, config, total_steps=100)
    before = validation_metrics(validate(net, [batch], config))
    stats = train_epoch(net, [batch] * 4, optimizer, scheduler, config)
    after = validation_metrics(validate(net, [batch], config))
    assert stats["steps"] == 4 and stats["images"] == 8
    assert after["loss"] < 0.7 * before["loss"], (before, after)


def test_validation_states_add_up_across_workers() -> None:
    torch.manual_seed(0)
    net = build_network(TINY.model, pretrained=False)
    first, second = _batch(1), _batch(2, count=3)
    together = validate(net, [first, second], TINY)
    merged = merge_validation_states([validate(net, [first], TINY), validate(net, [second], TINY)])
    assert together.keys() == merged.keys()
    for key in together:
        assert np.allclose(together[key], merged[key]), key
    metrics = validation_metrics(merged)
    assert metrics["images"] == 5 and {"loss", "iou", "max_f", "mae"} <= metrics.keys()


def test_validation_metrics_match_sod_metrics() -> None:
    torch.manual_seed(0)
    net = build_network(TINY.model, pretrained=False).eval()
    batch = _batch(3, count=3)
    reference = SodMetrics()
    probs = net.predict(batch["image"], [(64, 64)] * 3, flip_average=False)
    for prob, mask in zip(probs, batch["mask"], strict=True):
        reference.update(prob, mask)
    expected = reference.compute()
    got = validation_metrics(validate(net, [batch], TINY))
    assert got["iou"] == pytest.approx(expected["iou"], abs=1e-6)
    assert got["max_f"] == pytest.approx(expected["max_f"], abs=1e-6)
    assert got["mae"] == pytest.approx(expected["mae"], abs=1e-6)


def test_warmup_cosine_known_values() -> None:
    schedule = WarmupCosine(warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(9) == pytest.approx(1.0)
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx(0.55)  # halfway down: 0.1 + 0.9 * 0.5
    assert schedule(110) == pytest.approx(0.1) and schedule(500) == pytest.approx(0.1)


def test_optimizer_groups_and_schedule_steps() -> None:
    net = build_network(TINY.model, pretrained=False)
    config = dataclasses.replace(TINY, lr=1e-3, backbone_lr_scale=0.1, warmup_steps=4)
    optimizer, scheduler = build_optimizer(net, config, total_steps=20)
    backbone = {id(p) for p in net.backbone.parameters()}
    for group in optimizer.param_groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert len(in_backbone) == 1
        assert group["initial_lr"] == pytest.approx(1e-4 if in_backbone.pop() else 1e-3)
        if group["weight_decay"] > 0:
            assert all(p.ndim >= 2 for p in group["params"])
    norms = {id(m.weight) for m in net.modules() if isinstance(m, torch.nn.LayerNorm)}
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert norms and not norms & decayed
    lrs = sorted(group["lr"] for group in optimizer.param_groups)
    assert lrs[0] == pytest.approx(1e-4 / 4) and lrs[-1] == pytest.approx(1e-3 / 4)  # warm-up 0
    out = train_step(net, _batch(0), optimizer, scheduler, config)
    assert out["lr"] == pytest.approx(1e-3 / 4)
    assert max(group["lr"] for group in optimizer.param_groups) == pytest.approx(2e-3 / 4)


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_keeps_running_statistics(freeze: bool) -> None:
    net = build_network(TINY.model, pretrained=False)
    config = dataclasses.replace(TINY, freeze_bn=freeze)
    bn = net.backbone.model.bn1
    before = bn.running_mean.clone()
    optimizer, scheduler = build_optimizer(net, config, total_steps=10)
    train_epoch(net, [_batch(0)], optimizer, scheduler, config)
    assert torch.equal(bn.running_mean, before) == freeze
    set_train_mode(net, freeze_bn=freeze)
    assert bn.training != freeze and net.decoder.training


def test_quality_weighting_off_ignores_weights() -> None:
    torch.manual_seed(0)
    net = build_network(TINY.model, pretrained=False)
    batch = _batch(5)
    heavy = {**batch, "weight": np.array([5.0, 5.0], np.float32)}
    off = dataclasses.replace(TINY, quality_weighting=False)
    on_losses = []
    for config, data in ((off, batch), (off, heavy), (TINY, heavy)):
        optimizer, _ = build_optimizer(net, config, total_steps=10)
        for group in optimizer.param_groups:
            group["lr"] = 0.0  # compute the loss without changing the weights
        on_losses.append(train_step(net, data, optimizer, None, config)["loss"])
    assert on_losses[0] == pytest.approx(on_losses[1], rel=1e-5)
    assert on_losses[2] == pytest.approx(5 * on_losses[0], rel=1e-5)


def test_quality_weights_known_answer() -> None:
    quality = np.array([0.05, 0.4, np.nan, 1.1, -0.2])
    keep, weights = quality_weights(quality, dataclasses.replace(TINY, min_quality=0.3))
    assert keep.tolist() == [False, True, False, True, False]
    assert np.allclose(weights, [0.05, 0.4, 0.0, 1.1, 0.0])
    keep, weights = quality_weights(quality, dataclasses.replace(TINY, quality_weighting=False))
    assert keep.tolist() == [True, True, False, True, False] and (weights == 1).all()


def test_bad_batches_are_refused() -> None:
    batch = _batch(0)
    with pytest.raises(ValueError, match="image uint8"):
        batch_tensors({**batch, "image": batch["image"].astype(np.float32)}, torch.device("cpu"))
    with pytest.raises(ValueError, match="mask"):
        batch_tensors({**batch, "mask": batch["mask"][:, :10]}, torch.device("cpu"))


def test_bf16_autocast_step_is_close_to_float32() -> None:
    torch.manual_seed(0)
    net = build_network(TINY.model, pretrained=False)
    batch = _batch(4)
    losses = []
    for bf16 in (False, True):
        optimizer, _ = build_optimizer(net, TINY, total_steps=10)
        for group in optimizer.param_groups:
            group["lr"] = 0.0  # the same weights for both passes
        losses.append(train_step(net, batch, optimizer, None, TINY, bf16=bf16)["loss"])
    assert losses[0] != losses[1]  # autocast did run in bfloat16
    assert losses[1] == pytest.approx(losses[0], rel=0.05)
    state = validate(net, [batch], TINY, bf16=True)
    assert validation_metrics(state)["images"] == 2


def test_resumed_schedule_ends_at_the_new_total() -> None:
    """A rerun with more epochs stretches the cosine to its new end from the resumed step (the
    saved LambdaLR state alone would keep the first run's end)."""
    net = build_network(TINY.model, pretrained=False)
    config = dataclasses.replace(TINY, lr=1e-3, warmup_steps=2, min_lr_ratio=0.1)
    optimizer, scheduler = build_optimizer(net, config, total_steps=20)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    saved = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}

    optimizer, scheduler = build_optimizer(net, config, total_steps=40)
    optimizer.load_state_dict(saved["optimizer"])
    planned = restore_schedule(scheduler, saved["scheduler"], total_steps=40)
    longer = WarmupCosine(warmup_steps=2, total_steps=40, min_ratio=0.1)
    assert planned == 20 and scheduler.last_epoch == 10
    assert max(g["lr"] for g in optimizer.param_groups) == pytest.approx(1e-3 * longer(10))
    optimizer.step()
    scheduler.step()
    assert max(g["lr"] for g in optimizer.param_groups) == pytest.approx(1e-3 * longer(11))
    for _ in range(29):
        optimizer.step()
        scheduler.step()
    assert max(g["lr"] for g in optimizer.param_groups) == pytest.approx(1e-4)  # its end: 40
