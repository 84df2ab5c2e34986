"""The base of every metric: fixed-size float64 state that sums over images, merged by addition."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from autosod.evaluation.validate import validate_pair

__all__ = ["Accumulator", "BetaAccumulator"]


class Accumulator:
    """Mergeable metric state: named float64 arrays of fixed shape plus an image count.

    Subclasses set `STATE_SHAPES` (name -> shape, `()` for scalars) and implement
    `update_normalized(pred, gt)` on validated inputs and `compute()`. State never grows with
    the number of images, so accumulators of separate shards merge exactly by addition.
    """

    STATE_SHAPES: ClassVar[dict[str, tuple[int, ...]]] = {}

    def __init__(self) -> None:
        self.count = 0
        self._state = {
            name: np.zeros(shape, np.float64) for name, shape in self.STATE_SHAPES.items()
        }

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: pred (H, W) uint8 or float in [0, 1]; gt (H, W) bool or uint8."""
        pred01, gt_bool = validate_pair(pred, gt)
        self.update_normalized(pred01, gt_bool)

    def update_normalized(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one validated image: pred (H, W) float64 in [0, 1]; gt (H, W) bool."""
        raise NotImplementedError

    def _add(self, **values: np.ndarray | float) -> None:
        for name, value in values.items():
            self._state[name] += value
        self.count += 1

    def merge(self, other: Accumulator) -> Accumulator:
        """Add another accumulator of the same class and settings into this one; returns self."""
        if type(other) is not type(self) or other.settings() != self.settings():
            raise TypeError(
                f"cannot merge {type(other).__name__}{other.settings()} into "
                f"{type(self).__name__}{self.settings()}; merge accumulators of the same kind"
            )
        for name in self._state:
            self._state[name] += other._state[name]
        self.count += other.count
        return self

    def settings(self) -> dict[str, float]:
        """The metric's parameters (such as beta2); merge requires them to be equal."""
        return {}

    def state(self) -> dict[str, np.ndarray]:
        """A copy of the state arrays and the count (a 0-d array), e.g. to ship between workers."""
        out = {name: value.copy() for name, value in self._state.items()}
        out["count"] = np.asarray(self.count, np.int64)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> Accumulator:
        """Replace this accumulator's state with `state` (as made by `state()`); returns self."""
        for name, shape in self.STATE_SHAPES.items():
            value = np.asarray(state[name], np.float64)
            if value.shape != shape:
                raise ValueError(f"state {name!r} has shape {value.shape}, expected {shape}")
            self._state[name] = value.copy()
        self.count = int(state["count"])
        return self

    def _require_images(self) -> None:
        if self.count == 0:
            raise ValueError(f"{type(self).__name__} has no images; call update() before compute()")

    def compute(self) -> dict[str, float]:
        """The metric values averaged over the images seen so far."""
        raise NotImplementedError


class BetaAccumulator(Accumulator):
    """An accumulator of an F-measure with weight `beta2` (β²) of recall against precision;
    subclasses give their default as `DEFAULT_BETA2`."""

    DEFAULT_BETA2: ClassVar[float] = 0.3

    def __init__(self, *, beta2: float | None = None) -> None:
        beta2 = self.DEFAULT_BETA2 if beta2 is None else beta2
        if not beta2 > 0:
            raise ValueError(f"beta2 must be > 0, got {beta2}")
        self.beta2 = beta2
        super().__init__()

    def settings(self) -> dict[str, float]:
        return {"beta2": self.beta2}
