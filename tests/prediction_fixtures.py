"""A tiny trained AutoSOD run and a few real images, for the prediction tests.

`make_run` trains the tiny network a few steps with the in-process loop (seconds on a CPU) and
lays the checkpoint out the way `autosod train` does (RUN/epoch-0001/checkpoint.pt + best.json).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from autosod.models.autosod_net import build_network
from autosod.training.checkpoint import save_checkpoint
from autosod.training.config import ModelConfig, TrainConfig
from autosod.training.loop import build_optimizer, train_step
from autosod.training.runs import BEST_FILE, write_run_json

__all__ = ["SIZE", "TINY", "copy_images", "make_run"]

SIZE = 64  # prediction input size of the tiny run
TINY = TrainConfig(
    model=ModelConfig(input_size_px=SIZE, pixel_dim=16, hidden_dim=32, decoder_layers=2,
                      queries=3, heads=2, ffn_dim=32),
    warmup_steps=1, freeze_bn=False, predict_size_px=SIZE,
)


def make_run(run: Path, *, decoder: str = "query", steps: int = 3) -> Path:
    """A run directory holding one checkpoint of the tiny network after `steps` steps on
    random images whose masks are a centred square; returns the checkpoint file."""
    torch.manual_seed(0)
    config = TrainConfig(model=ModelConfig(**{**TINY.model.__dict__, "decoder": decoder}),
                         warmup_steps=1, freeze_bn=False, predict_size_px=SIZE)
    net = build_network(config.model, pretrained=True)
    optimizer, scheduler = build_optimizer(net, config, total_steps=steps)
    rng = np.random.default_rng(0)
    mask = np.zeros((2, SIZE, SIZE), np.uint8)
    mask[:, 16:48, 16:48] = 255
    for _ in range(steps):
        batch = {"image": rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8),
                 "mask": mask, "weight": np.ones(2, np.float32)}
        train_step(net, batch, optimizer, scheduler, config)
    path = save_checkpoint(run / "epoch-0001" / "checkpoint.pt", model=net, epoch=1,
                           step=steps, metadata={"train": config.to_dict()})
    write_run_json(str(run), BEST_FILE, {"checkpoint": "epoch-0001/checkpoint.pt", "epoch": 1,
                                         "predict_size_px": SIZE, "flip_average": True})
    return path


def copy_images(benchmark: Path, out: Path, count: int) -> list[Path]:
    """The first `count` images of a benchmark folder with their masks, as out/images and
    out/masks."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    copied = []
    for image in sorted((benchmark / "images").iterdir())[:count]:
        copied.append(Path(shutil.copy(image, out / "images" / image.name)))
        mask = next((benchmark / "masks").glob(f"{image.stem}.*"))
        shutil.copy(mask, out / "masks" / mask.name)
    return copied
