"""A probe of a process's allocator: how many pages a fresh interpreter faults in again while
it allocates and frees the same buffers (`labeling.host_memory`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# minor page faults of 10 rounds of allocating and freeing 12 x 8 MiB, after one warm round
_FAULTS = """
import resource
import numpy as np
{setup}
def rounds(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        arrays = [np.ones(1 << 20) for _ in range(12)]
        del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
rounds(1)
print(rounds(10))
"""


def page_faults(setup: str) -> int:
    """Minor page faults of the probe after `setup` ran in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", _FAULTS.format(setup=setup)], cwd=ROOT,
                            capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.strip().splitlines()[-1])
