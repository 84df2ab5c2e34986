"""A training run's directory (local or s3://), and how prediction finds its best checkpoint.

Layout of `--run RUN` (Ray Train's storage is RUN's parent, its run name RUN's last component)::

    epoch-0003/checkpoint.pt          one checkpoint per epoch (autosod.training.checkpoint),
                                      uploaded by Ray Train; the best `keep` and the latest stay
    best.json                         {"checkpoint": "epoch-0003/checkpoint.pt", "epoch": 3,
                                       "metric": "val_iou", "value": ..., "val": ..., ...}
    history.json                      every finished epoch's figures, in order
    summary.json                      the run summary; written last, removed when a run starts
    checkpoint_manager_snapshot.json  Ray Train's own record (what a rerun resumes from)

Prediction: `best_checkpoint(RUN)` is the URI of the best checkpoint, and
`load_run_network(RUN_OR_CHECKPOINT, device=...)` returns that network ready for
`AutoSodNet.predict` (weights loaded with `weights_only=True`).
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from autosod.io.filesystem import is_local, join_uri, open_filesystem, put_atomic
from autosod.models.autosod_net import AutoSodNet
from autosod.training.checkpoint import CheckpointError, load_network

__all__ = [
    "BEST_FILE",
    "CHECKPOINT_FILE",
    "HISTORY_FILE",
    "RAY_SNAPSHOT_FILE",
    "SUMMARY_FILE",
    "best_checkpoint",
    "checkpoint_dir_name",
    "latest_checkpoint",
    "load_run_network",
    "local_copy",
    "read_run_json",
    "remove_run_file",
    "storage_location",
    "write_run_json",
]

BEST_FILE = "best.json"
HISTORY_FILE = "history.json"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
RAY_SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # Ray Train V2's run snapshot


def checkpoint_dir_name(epoch: int) -> str:
    """The folder of the checkpoint written after `epoch` epochs (1-based)."""
    return f"epoch-{epoch:04d}"


def storage_location(run: str, storage_options: dict[str, Any] | None = None) -> tuple[
        str, str, Any]:
    """(storage_path, name, pyarrow filesystem or None) for Ray Train's RunConfig.

    Local runs: the absolute parent folder and no filesystem. s3:// runs: the parent as
    `bucket/prefix` and the project's s3fs filesystem wrapped for pyarrow, so that a custom
    endpoint (`--endpoint-url`) reaches Ray Train's uploads too.
    """
    import pyarrow.fs as pafs

    name = posixpath.basename(run.rstrip("/"))
    fs, path = open_filesystem(run, storage_options)
    parent = posixpath.dirname(path.rstrip("/"))
    if is_local(fs):
        return str(Path(parent).resolve()), name, None
    return parent, name, pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def read_run_json(run: str, name: str, storage_options: dict[str, Any] | None = None
                  ) -> dict[str, Any] | None:
    """RUN/name parsed, or None when absent."""
    fs, path = open_filesystem(join_uri(run, name), storage_options)
    if not fs.exists(path):
        return None
    return json.loads(fs.cat_file(path))


def write_run_json(run: str, name: str, data: Any,
                   storage_options: dict[str, Any] | None = None) -> str:
    """Write RUN/name atomically (readers see the old or the whole new file); returns its URI."""
    uri = join_uri(run, name)
    fs, path = open_filesystem(uri, storage_options)
    put_atomic(fs, path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
    return uri


def remove_run_file(run: str, name: str, storage_options: dict[str, Any] | None = None) -> None:
    fs, path = open_filesystem(join_uri(run, name), storage_options)
    if fs.exists(path):
        fs.rm_file(path)


def best_checkpoint(run: str, storage_options: dict[str, Any] | None = None) -> str:
    """URI of the run's best checkpoint file (chosen on the pseudo-mask validation split)."""
    best = read_run_json(run, BEST_FILE, storage_options)
    if best is None:
        raise FileNotFoundError(f"run {run!r} has no {BEST_FILE}: no epoch has finished there "
                                "yet; train first, or give a checkpoint file")
    uri = join_uri(run, best["checkpoint"])
    fs, path = open_filesystem(uri, storage_options)
    if not fs.exists(path):
        raise FileNotFoundError(f"the best checkpoint of run {run!r}, {uri!r}, is missing; "
                                "rerun the training command to rewrite best.json")
    return uri


def latest_checkpoint(run: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """URI of the checkpoint a rerun resumes from (Ray Train's latest), or None for a new run."""
    snapshot = read_run_json(run, RAY_SNAPSHOT_FILE, storage_options)
    latest = (snapshot or {}).get("latest_checkpoint_result") or {}
    if not latest.get("checkpoint_dir_name"):
        return None
    return join_uri(run, latest["checkpoint_dir_name"], CHECKPOINT_FILE)


@contextlib.contextmanager
def local_copy(uri: str, storage_options: dict[str, Any] | None = None) -> Iterator[Path]:
    """A local path to the file at `uri` (downloaded to a temporary folder when remote)."""
    fs, path = open_filesystem(uri, storage_options)
    if is_local(fs):
        yield Path(path)
        return
    if not fs.exists(path):
        raise CheckpointError(f"checkpoint {uri!r} does not exist; check the run directory")
    with tempfile.TemporaryDirectory(prefix="autosod-ckpt-") as tmp:
        local = Path(tmp) / posixpath.basename(path)
        fs.get_file(path, str(local))
        yield local


def load_run_network(
    run_or_checkpoint: str,
    *,
    device: str | torch.device = "cpu",
    storage_options: dict[str, Any] | None = None,
) -> AutoSodNet:
    """The network of a checkpoint file (`*.pt`) or of a run's best checkpoint, in eval mode.

    Use `net.predict(images, sizes, flip_average=True)` with uint8 images squeezed to the
    run's `predict_size_px` (best.json's `predict_size_px`) for soft masks at each image's size.
    """
    uri = run_or_checkpoint
    if not uri.endswith(".pt"):
        uri = best_checkpoint(run_or_checkpoint, storage_options)
    with local_copy(uri, storage_options) as path:
        return load_network(path, device=device)
