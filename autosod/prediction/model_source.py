"""Which checkpoint a prediction run uses, checked whole before any work (torch, no Ray).

`resolve_checkpoint(RUN_OR_CHECKPOINT)`: a run directory resolves to its best checkpoint (and the
prediction size and flip averaging its validation used, from best.json); a folder holding
`checkpoint.pt` (one epoch's) to that file; a `.pt` file to itself (its settings from the
checkpoint's metadata). The file is read once on the driver: its SHA-256 (recorded in the
store's config, so that a resume with another checkpoint is refused) and a full load into its
network, so that a truncated file, another architecture or a pickle that needs more than tensors
fails in one line (`CheckpointError`) before Ray starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from autosod.io.filesystem import is_local, join_uri, open_filesystem
from autosod.training.checkpoint import CheckpointError, load_checkpoint, load_network
from autosod.training.runs import (
    BEST_FILE,
    CHECKPOINT_FILE,
    best_checkpoint,
    local_copy,
    read_run_json,
)

__all__ = ["CheckpointError", "ResolvedCheckpoint", "resolve_checkpoint"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checked checkpoint file and the prediction settings it comes with."""

    uri: str  # the .pt file (absolute for local files)
    sha256: str  # of the file's bytes
    model_config: dict[str, Any]  # ModelConfig fields
    epoch: int  # epochs it had been trained for
    size_px: int  # prediction input size: the run's predict_size_px unless asked otherwise
    flip_average: bool  # as the run validated unless asked otherwise


def _file_uri(run_or_checkpoint: str, storage_options: dict[str, Any] | None
              ) -> tuple[str, dict[str, Any]]:
    """(checkpoint file URI, the run's best.json or {})."""
    fs, path = open_filesystem(run_or_checkpoint, storage_options)
    if is_local(fs):
        run_or_checkpoint = os.path.abspath(path)
    if fs.isfile(path):
        return run_or_checkpoint, {}
    if not fs.isdir(path):
        raise CheckpointError(f"{run_or_checkpoint!r} does not exist; give a training run "
                              f"directory or a checkpoint file (.pt)")
    best = read_run_json(run_or_checkpoint, BEST_FILE, storage_options)
    if best is not None:
        return best_checkpoint(run_or_checkpoint, storage_options), best
    single = join_uri(run_or_checkpoint, CHECKPOINT_FILE)
    if fs.isfile(open_filesystem(single, storage_options)[1]):
        return single, {}
    raise CheckpointError(f"{run_or_checkpoint!r} holds neither {BEST_FILE} (a training run "
                          f"with a finished epoch) nor {CHECKPOINT_FILE}; give a run directory "
                          f"or a checkpoint file (.pt)")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_checkpoint(run_or_checkpoint: str, *, size_px: int | None = None,
                       flip_average: bool | None = None,
                       storage_options: dict[str, Any] | None = None) -> ResolvedCheckpoint:
    """The checked checkpoint of a run directory or file (see the module docstring); raises
    `CheckpointError` (one line) for anything unusable."""
    uri, best = _file_uri(run_or_checkpoint, storage_options)
    with local_copy(uri, storage_options) as path:
        checkpoint = load_checkpoint(path)
        load_network(path)  # the weights fit the architecture the file names
        digest = _sha256(str(path))
    train = checkpoint.metadata.get("train") or {}
    size = size_px or best.get("predict_size_px") or train.get("predict_size_px") \
        or checkpoint.model_config.input_size_px
    flip = flip_average if flip_average is not None else best.get(
        "flip_average", train.get("flip_average", True))
    return ResolvedCheckpoint(uri=uri, sha256=digest,
                              model_config=json.loads(checkpoint.model_config.to_json()),
                              epoch=checkpoint.epoch, size_px=int(size), flip_average=bool(flip))
