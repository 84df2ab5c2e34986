"""autosod.potnet.xp: dispatch, zero-copy DLPack from torch, and the import boundary."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import has_gpu

from autosod.potnet.xp import array_module, batched_qr, from_dlpack, host_uniform, to_numpy


def test_array_module_is_numpy_for_numpy_inputs() -> None:
    assert array_module(np.zeros(3), np.ones(2)) is np
    assert isinstance(to_numpy(np.arange(3)), np.ndarray)


def test_import_leaves_out_ray_torch_and_cupy() -> None:
    code = (
        "import sys, autosod.potnet; "
        "print(sorted(m for m in ('ray', 'torch', 'cupy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]", f"importing autosod.potnet pulled in {out}"


def test_from_dlpack_shares_torch_cpu_memory() -> None:
    tensor = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    array = from_dlpack(tensor)
    assert isinstance(array, np.ndarray)
    assert array.shape == (3, 4) and array.dtype == np.float32
    assert array.__array_interface__["data"][0] == tensor.data_ptr()
    tensor[0, 0] = 42.0
    assert array[0, 0] == 42.0, "the array must be a view of the tensor, not a copy"


def test_from_dlpack_rejects_plain_objects() -> None:
    with pytest.raises(TypeError, match="__dlpack_device__"):
        from_dlpack([1, 2, 3])


def test_batched_qr_is_orthonormal_and_spans_input() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 20, 4)).astype(np.float32)
    q = batched_qr(a)
    eye = np.broadcast_to(np.eye(4, dtype=np.float32), (5, 4, 4))
    np.testing.assert_allclose(q.transpose(0, 2, 1) @ q, eye, atol=1e-5)
    np.testing.assert_allclose(q @ (q.transpose(0, 2, 1) @ a), a, atol=1e-4)


def test_host_uniform_is_seeded() -> None:
    first = host_uniform(np, seed=3, shape=(4,))
    assert first.dtype == np.float32
    np.testing.assert_array_equal(first, host_uniform(np, seed=3, shape=(4,)))
    assert not np.array_equal(first, host_uniform(np, seed=4, shape=(4,)))


@pytest.mark.gpu
def test_from_dlpack_shares_torch_cuda_memory() -> None:
    if not has_gpu():
        pytest.skip("no CUDA GPU with CuPy on this machine")
    import cupy
    import torch

    tensor = torch.arange(6, dtype=torch.float32, device="cuda")
    array = from_dlpack(tensor)
    assert isinstance(array, cupy.ndarray)
    assert array.data.ptr == tensor.data_ptr()
    assert array_module(array) is cupy
