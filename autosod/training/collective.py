"""Summing fixed-size states across training workers with torch.distributed (gloo or NCCL).

Validation and metric states are dicts of sums and counts (`loop.validate`, the evaluation
accumulators' `state()`), so the global state is the element-wise sum over workers. Without an
initialised process group (one worker) the state is returned as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["all_reduce_sum", "world"]


def world() -> tuple[int, int]:
    """(rank, world size) of the process group, or (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(
    state: Mapping[str, np.ndarray], device: torch.device | str = "cpu"
) -> dict[str, np.ndarray]:
    """The element-wise sum of `state` over all workers (every worker gets the same result).

    One collective for the whole dict: the arrays are flattened into one float64 vector on
    `device` (a CUDA device under NCCL), summed, and split back with their shapes and dtypes.
    Every worker must pass the same keys with the same shapes.
    """
    keys = sorted(state)
    arrays = [np.asarray(state[k]) for k in keys]
    if world()[1] == 1:
        return {k: a.copy() for k, a in zip(keys, arrays, strict=True)}
    flat = np.concatenate([a.astype(np.float64).ravel() for a in arrays]) if arrays else \
        np.zeros(0, np.float64)
    tensor = torch.as_tensor(flat, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    summed = tensor.cpu().numpy()
    out, offset = {}, 0
    for key, array in zip(keys, arrays, strict=True):
        size = array.size
        out[key] = summed[offset : offset + size].reshape(array.shape).astype(array.dtype)
        offset += size
    return out
