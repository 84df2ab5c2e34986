"""Evaluate one or several prediction sources (folders or mask stores) and write the outputs."""

from __future__ import annotations

import logging
from pathlib import Path

from autosod.evaluation.evaluate import EvaluationResult, evaluate_folder
from autosod.evaluation.plots import plot_results
from autosod.evaluation.report import markdown_table, write_results
from autosod.evaluation.store_source import evaluate_store, is_store

__all__ = ["evaluate_source", "unique_names", "write_outputs"]

logger = logging.getLogger(__name__)


def unique_names(sources: list[str]) -> list[str]:
    """Run names from the last path component, suffixed `-2`, `-3` when they repeat."""
    names: list[str] = []
    for source in sources:
        base = source.rstrip("/").rsplit("/", 1)[-1] or source
        name, index = base, 2
        while name in names:
            name, index = f"{base}-{index}", index + 1
        names.append(name)
    return names


def evaluate_source(
    pred: str, benchmark: str, *, name: str | None = None, storage_options: dict | None = None
) -> EvaluationResult:
    """Evaluate `pred` (a mask store or a folder of `<stem>.png`) against a benchmark folder."""
    if is_store(pred, storage_options):
        logger.info("%s is a mask store: evaluating its soft maps", pred)
        return evaluate_store(pred, benchmark, name=name, storage_options=storage_options)
    return evaluate_folder(pred, benchmark, name=name, storage_options=storage_options)


def write_outputs(
    results: list[EvaluationResult], *, json_path: str | None, plots_dir: str | None
) -> str:
    """Write the metrics JSON and plots when asked; returns the Markdown table."""
    if json_path:
        logger.info("wrote %s", write_results(results, json_path))
    if plots_dir:
        plot_results(results, Path(plots_dir))
    return markdown_table(results)
