"""The attempts ledger of the labelling and prediction actors (no torch, no Ray here).

The job runs one `LocalAttempts` as a Ray actor that every map actor asks
(`job_pipeline.SharedAttempts`); it lives apart from the actor body so that this small actor
starts without importing torch, timm and the model (on a 2-core node that import cost the
pipeline's start about 3 CPU seconds).
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

__all__ = ["Attempts", "LocalAttempts"]


class Attempts(Protocol):
    """Attempts at labelling a key (a batch or one image) that began and never ended."""

    def begin(self, key: str) -> int:
        """Record an attempt at `key`; returns how many earlier ones never ended."""
        ...

    def end(self, key: str) -> None:
        """The attempt at `key` finished (with results or failure rows)."""
        ...


class LocalAttempts:
    """An in-process `Attempts` ledger (one actor, tests); the job shares one across actors."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def begin(self, key: str) -> int:
        earlier = self._open[key]
        self._open[key] += 1
        return earlier

    def end(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]
