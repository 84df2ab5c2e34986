"""Host memory of CPU actors: keep freed buffers for the next batch instead of returning them.

glibc hands allocations above its mmap threshold (at most 32 MiB) straight to the kernel and
returns the top of the heap once more than twice that lies free. A CPU backbone allocates and
frees hundreds of MiB of activations per batch, so each batch faulted its memory in again: on
the 2-core dev machine a third of a single-threaded labeller's CPU time was spent in the kernel
(docs/benchmarks.md). With a fixed threshold and a high trim threshold, buffers below 32 MiB
come from the heap and stay there; `PseudoLabeler` runs the CPU backbone in chunks of images
small enough for that.
"""

from __future__ import annotations

import ctypes
import logging

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "keep_freed_memory"]

logger = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest: smaller buffers come from the heap
TRIM_THRESHOLD_BYTES = 1 << 30  # free heap kept for reuse before any is given back
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Set this process's glibc allocator to reuse freed buffers; False where there is no glibc
    (macOS, musl), which changes nothing else."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        done = (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    except (OSError, AttributeError):
        done = False
    logger.debug("allocator keeps freed memory: %s", done)
    return done
