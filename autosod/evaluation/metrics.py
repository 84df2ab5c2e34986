"""`SodMetrics`: every metric of the metrics JSON contract behind one mergeable accumulator."""

from __future__ import annotations

import numpy as np

from autosod.evaluation.accumulator import Accumulator
from autosod.evaluation.emeasure import EmeasureAccumulator
from autosod.evaluation.fmeasure import FmeasureAccumulator
from autosod.evaluation.pixelwise import IouAccumulator, MaeAccumulator
from autosod.evaluation.structure import SmeasureAccumulator
from autosod.evaluation.thresholds import NUM_THRESHOLDS
from autosod.evaluation.validate import validate_pair
from autosod.evaluation.weighted_fmeasure import WeightedFmeasureAccumulator

__all__ = ["SodMetrics"]


class SodMetrics:
    """F-measure (max, mean, adaptive), MAE, S-measure, E-measure, weighted F and IoU at once.

    Each pair is validated once and fed to every accumulator; state is a fixed set of arrays
    (sums of 256-threshold curves and of per-image scores) plus the image count.
    """

    def __init__(
        self,
        *,
        beta2: float = 0.3,
        alpha: float = 0.5,
        weighted_beta2: float = 1.0,
        iou_threshold: float = 0.5,
    ) -> None:
        self.parts: dict[str, Accumulator] = {
            "fmeasure": FmeasureAccumulator(beta2=beta2),
            "emeasure": EmeasureAccumulator(),
            "smeasure": SmeasureAccumulator(alpha=alpha),
            "weighted_fmeasure": WeightedFmeasureAccumulator(beta2=weighted_beta2),
            "mae": MaeAccumulator(),
            "iou": IouAccumulator(threshold=iou_threshold),
        }

    @property
    def count(self) -> int:
        """Number of images added (directly or through merges)."""
        return self.parts["mae"].count

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: pred (H, W) uint8 or float in [0, 1]; gt (H, W) bool or uint8."""
        pred01, gt_bool = validate_pair(pred, gt)
        for part in self.parts.values():
            part.update_normalized(pred01, gt_bool)

    def merge(self, other: SodMetrics) -> SodMetrics:
        """Add another `SodMetrics` (same settings) into this one; returns self."""
        for name, part in self.parts.items():
            part.merge(other.parts[name])
        return self

    def compute(self) -> dict[str, float]:
        """`count` and every scalar metric, averaged over the images seen."""
        out: dict[str, float] = {"count": self.count}
        for part in self.parts.values():
            out.update(part.compute())
        return out

    def curves(self) -> dict[str, np.ndarray]:
        """Mean curves (256,) indexed by threshold: `threshold` (0..255), `precision`, `recall`,
        `f` (from mean P and R), `f_per_image`, `e`."""
        curves = {"threshold": np.arange(NUM_THRESHOLDS)}
        curves.update(self.parts["fmeasure"].curves())
        curves.update(self.parts["emeasure"].curves())
        return curves

    def state(self) -> dict[str, np.ndarray]:
        """Flat state `{"<part>.<name>": array}` for shipping between workers."""
        return {
            f"{name}.{key}": value
            for name, part in self.parts.items()
            for key, value in part.state().items()
        }

    def load_state(self, state: dict[str, np.ndarray]) -> SodMetrics:
        """Replace the state with one made by `state()`; returns self."""
        for name, part in self.parts.items():
            prefix = f"{name}."
            part.load_state({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        return self
