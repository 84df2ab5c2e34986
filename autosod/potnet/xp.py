"""The array-module dispatch: NumPy on the CPU, CuPy on a GPU; the only module that imports cupy.

Every other module of `autosod.potnet` starts with `xp = array_module(...)` and uses only `xp.`;
each NumPy/CuPy difference is one named function here.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "array_module",
    "batched_eigh",
    "batched_qr",
    "from_dlpack",
    "host_normal",
    "host_uniform",
    "is_cupy",
    "to_numpy",
]


Array = Any  # numpy.ndarray or cupy.ndarray

# DLPack device types (dlpack.h): CPU, CUDA, CUDA pinned host, CUDA managed.
_DLPACK_CPU = 1
_DLPACK_CUDA = {2, 3, 13}


def _import_cupy() -> ModuleType:
    try:
        return importlib.import_module("cupy")
    except ImportError as error:  # pragma: no cover - depends on the machine
        raise ImportError(
            "a GPU array was given but CuPy is not importable; install autosod[gpu] "
            f"(cupy-cuda13x) or pass NumPy arrays: {error}"
        ) from error


def is_cupy(a: object) -> bool:
    """True when `a` is a CuPy array (decided by its type's module, without importing cupy)."""
    return type(a).__module__.split(".", 1)[0] == "cupy"


def array_module(*arrays: object) -> ModuleType:
    """`cupy` when any input is a CuPy array, else `numpy`."""
    if any(is_cupy(a) for a in arrays):
        return _import_cupy()
    return np


def to_numpy(a: Array) -> np.ndarray:
    """A NumPy copy of a CuPy array, or `a` itself as a NumPy array."""
    if is_cupy(a):
        return a.get()
    return np.asarray(a)


def from_dlpack(tensor: object) -> Array:
    """A zero-copy NumPy (CPU tensor) or CuPy (CUDA tensor) view of any DLPack producer.

    Works for torch tensors without importing torch: the device comes from
    `tensor.__dlpack_device__()`. The tensor must not require grad (call `.detach()` first).
    """
    if not hasattr(tensor, "__dlpack_device__"):
        raise TypeError(
            f"from_dlpack needs an object with __dlpack_device__ (a torch tensor or array), "
            f"got {type(tensor).__name__}"
        )
    device_type, _ = tensor.__dlpack_device__()
    if int(device_type) == _DLPACK_CPU:
        return np.from_dlpack(tensor)
    if int(device_type) in _DLPACK_CUDA:
        return _import_cupy().from_dlpack(tensor)
    raise ValueError(
        f"from_dlpack: DLPack device type {int(device_type)} is not supported; "
        "move the tensor to the CPU or a CUDA device"
    )


def batched_eigh(a: Array) -> tuple[Array, Array]:
    """Eigenvalues (B, M) ascending and eigenvectors (B, M, M) of symmetric matrices (B, M, M)."""
    xp = array_module(a)
    return xp.linalg.eigh(a)


def batched_qr(a: Array) -> Array:
    """Orthonormal factor Q (B, M, P) of the reduced QR of a stack of matrices (B, M, P)."""
    xp = array_module(a)
    q, _ = xp.linalg.qr(a, mode="reduced")
    return q


def host_uniform(xp: ModuleType, *, seed: int, shape: tuple[int, ...]) -> Array:
    """Seeded uniforms in [0, 1) drawn on the host, then moved to `xp` (float32).

    Drawing on the host makes NumPy and CuPy runs use the very same random numbers.
    """
    values = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return xp.asarray(values)


def host_normal(xp: ModuleType, *, seed: int, shape: tuple[int, ...]) -> Array:
    """Seeded standard normals drawn on the host, then moved to `xp` (float32)."""
    values = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    return xp.asarray(values)
