"""The POTNet head (docs/potnet.md) as batched array code for NumPy or CuPy.

Imports only numpy (and cupy lazily, through `autosod.potnet.xp`); never torch or ray.
"""

from autosod.potnet.config import PotnetConfig
from autosod.potnet.head import NO_SIGNAL_REASONS, HeadResult, run_head
from autosod.potnet.xp import array_module, from_dlpack, to_numpy

__all__ = [
    "NO_SIGNAL_REASONS",
    "HeadResult",
    "PotnetConfig",
    "array_module",
    "from_dlpack",
    "run_head",
    "to_numpy",
]
