"""Salient-object-detection metrics as mergeable accumulators, benchmark pairing, reports, plots.

NumPy, SciPy and Pillow only (matplotlib for plots); never imports torch or ray.
"""

from autosod.evaluation.emeasure import EmeasureAccumulator
from autosod.evaluation.fmeasure import FmeasureAccumulator
from autosod.evaluation.metrics import SodMetrics
from autosod.evaluation.pixelwise import IouAccumulator, MaeAccumulator
from autosod.evaluation.structure import SmeasureAccumulator
from autosod.evaluation.validate import resize_to, validate_pair
from autosod.evaluation.weighted_fmeasure import WeightedFmeasureAccumulator

__all__ = [
    "EmeasureAccumulator",
    "FmeasureAccumulator",
    "IouAccumulator",
    "MaeAccumulator",
    "SmeasureAccumulator",
    "SodMetrics",
    "WeightedFmeasureAccumulator",
    "resize_to",
    "validate_pair",
]
