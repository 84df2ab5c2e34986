"""Checkpoints: a plain dict of tensors and small values that loads with `weights_only=True`.

Layout (`torch.save` of one dict): `format`, `version`, `model_config` (ModelConfig JSON, all
fields), `fingerprint` (the architecture fields, `ModelConfig.fingerprint()`), `model` (state
dict), `optimizer` and `scheduler` (their state dicts, or None), `epoch`, `step`, `rng` (torch,
NumPy Generator and Python `random` states, or None) and `metadata` (JSON text). Written to a
temporary name and renamed, so a crash never leaves a half-written file under the final name.
Every way a file can be unusable (missing, truncated, not ours, pickled Python objects, another
architecture) raises `CheckpointError`, a ValueError whose one line names the file and the fix.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autosod.models.autosod_net import AutoSodNet, build_network
from autosod.training.config import ModelConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "capture_rng",
    "load_checkpoint",
    "load_network",
    "restore_rng",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "autosod-checkpoint"
CHECKPOINT_VERSION = 1
_KEYS = ("format", "version", "model_config", "fingerprint", "model", "epoch", "step")


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, unsafe, or of another architecture."""


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """What `load_checkpoint` read; pass the states to `load_state_dict` of each object."""

    path: str
    model_config: ModelConfig
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict | None = None
    scheduler_state: dict | None = None
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps completed
    rng: dict | None = None  # for restore_rng
    metadata: dict[str, Any] = field(default_factory=dict)


def capture_rng(generator: np.random.Generator | None = None) -> dict[str, Any]:
    """The torch (CPU), Python `random` and (if given) NumPy Generator states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if generator is not None:
        state["numpy"] = generator.bit_generator.state
    return state


def restore_rng(state: Mapping[str, Any], generator: np.random.Generator | None = None) -> None:
    """Set the states saved by `capture_rng` (the NumPy one into `generator`, if given)."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if generator is not None and "numpy" in state:
        generator.bit_generator.state = state["numpy"]


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    epoch: int = 0,
    step: int = 0,
    rng: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write the checkpoint of `model` (an AutoSodNet, or DDP around one) atomically to `path`."""
    net: AutoSodNet = getattr(model, "module", model)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": net.config.to_json(),
        "fingerprint": net.config.fingerprint(),
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "rng": dict(rng) if rng is not None else None,
        "metadata": json.dumps(dict(metadata or {}), sort_keys=True),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _first_line(err: BaseException) -> str:
    lines = str(err).splitlines()
    return f"{type(err).__name__}: {lines[0][:120]}" if lines else type(err).__name__


def _read(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; check the run directory")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its index comes last
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or damaged (not a complete torch.save "
            f"archive, {path.stat().st_size} bytes); delete it and resume from an earlier one"
        )
    try:  # torch.load does not check the entries' CRCs; this does
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        damaged = _first_line(err)
    if damaged is not None:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or damaged (entry {damaged!r} fails its "
            f"CRC check); delete it and resume from an earlier one"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load checkpoint {str(path)!r}: it holds pickled Python objects beyond "
            f"tensors, which weights_only=True rejects ({_first_line(err)}); only load "
            f"checkpoints written by autosod's save_checkpoint"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or damaged ({_first_line(err)}); delete it "
            f"and resume from an earlier one"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not an autosod checkpoint (no format {CHECKPOINT_FORMAT!r}); "
            f"for backbone weights use the model's `weights` option instead"
        )
    missing = [k for k in _KEYS if k not in payload]
    if missing or payload["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has version {payload.get('version')!r} and lacks "
            f"{missing}; this autosod reads version {CHECKPOINT_VERSION}: use a matching autosod"
        )
    return payload


def load_checkpoint(path: str | Path, *, expect: ModelConfig | None = None) -> Checkpoint:
    """Read a checkpoint; with `expect`, refuse one whose architecture differs from it."""
    path = Path(path)
    payload = _read(path)
    try:
        config = ModelConfig.from_json(payload["model_config"])
    except (ValueError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} carries a model config this autosod cannot read "
            f"({_first_line(err)}); use the autosod version that wrote it"
        ) from err
    if expect is not None and payload["fingerprint"] != expect.fingerprint():
        saved, wanted = json.loads(payload["fingerprint"]), json.loads(expect.fingerprint())
        diff = {k: (saved.get(k), wanted.get(k)) for k in wanted if saved.get(k) != wanted.get(k)}
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds another architecture (saved vs wanted: {diff}); "
            f"use a new run directory, or the settings the checkpoint was trained with"
        )
    return Checkpoint(
        path=str(path),
        model_config=config,
        model_state=payload["model"],
        optimizer_state=payload.get("optimizer"),
        scheduler_state=payload.get("scheduler"),
        epoch=int(payload["epoch"]),
        step=int(payload["step"]),
        rng=payload.get("rng"),
        metadata=json.loads(payload.get("metadata") or "{}"),
    )


def load_network(path: str | Path, *, device: str | torch.device = "cpu") -> AutoSodNet:
    """The network saved in a checkpoint, in eval mode on `device` (no backbone download)."""
    checkpoint = load_checkpoint(path)
    net = build_network(checkpoint.model_config, pretrained=False)
    try:
        net.load_state_dict(checkpoint.model_state)
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit its own architecture "
            f"({_first_line(err)}); it was written by another autosod version"
        ) from err
    return net.to(device).eval()
