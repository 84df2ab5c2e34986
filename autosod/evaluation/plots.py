"""Plots of SOD papers: precision-recall curves and F-measure against threshold, runs overlaid.

Drawn with matplotlib's object API on the Agg canvas (no display, no global backend switch).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autosod.evaluation.evaluate import EvaluationResult

__all__ = ["plot_f_threshold", "plot_precision_recall", "plot_results"]

logger = logging.getLogger(__name__)

_DPI = 120


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=_DPI, bbox_inches="tight")
    logger.info("wrote %s", path)
    return path


def plot_precision_recall(results: list[EvaluationResult], path: str | Path) -> Path:
    """Mean precision against mean recall over the 256 thresholds, the max-F point marked."""
    figure = Figure(figsize=(5.5, 4.5))
    axes = figure.add_subplot()
    for result in results:
        precision, recall = result.curves["precision"], result.curves["recall"]
        best = int(np.argmax(result.curves["f"]))
        label = f"{result.name} (max F {result.metrics['max_f']:.3f})"
        (line,) = axes.plot(recall, precision, linewidth=1.8, label=label)
        axes.plot(recall[best], precision[best], "o", color=line.get_color(), markersize=5)
    axes.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02))
    axes.set_title("Precision-recall (dataset-mean curves)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    return _save(figure, Path(path))


def plot_f_threshold(results: list[EvaluationResult], path: str | Path) -> Path:
    """F-measure (beta^2 = 0.3, from mean P and R) against the threshold 0..255."""
    figure = Figure(figsize=(5.5, 4.5))
    axes = figure.add_subplot()
    for result in results:
        thresholds, f_curve = result.curves["threshold"], result.curves["f"]
        label = f"{result.name} (mean F {result.metrics['mean_f']:.3f})"
        axes.plot(thresholds, f_curve, linewidth=1.8, label=label)
    axes.set(xlabel="Threshold", ylabel="F-measure", xlim=(0, 255), ylim=(0, 1.02))
    axes.set_title(r"F-measure ($\beta^2$ = 0.3) against threshold")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    return _save(figure, Path(path))


def plot_results(results: list[EvaluationResult], out_dir: str | Path) -> list[Path]:
    """Write `pr_curve.png` and `f_threshold.png` for the runs into `out_dir`; returns paths."""
    if not results:
        raise ValueError("no evaluation results to plot")
    out_dir = Path(out_dir)
    return [
        plot_precision_recall(results, out_dir / "pr_curve.png"),
        plot_f_threshold(results, out_dir / "f_threshold.png"),
    ]
