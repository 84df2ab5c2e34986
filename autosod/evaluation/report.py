"""The metrics JSON of the contract (architecture.md) and the Markdown table for the console.

One run's JSON has the top-level keys `count`, `max_f`, `mean_f`, `adaptive_f`, `mae`,
`s_measure`, `max_e`, `mean_e`, `iou`, `weighted_f`, `max_f_per_image` (and a few more), plus
`name`, `curves` (mean precision, recall, F and E per threshold 0..255) and `pairing`. Several
runs are written as `{"runs": [run, ...]}`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from autosod.evaluation.evaluate import EvaluationResult

__all__ = [
    "CONTRACT_KEYS",
    "load_results",
    "markdown_table",
    "result_from_json",
    "result_to_json",
    "write_results",
]

CONTRACT_KEYS = (
    "count", "max_f", "mean_f", "adaptive_f", "mae", "s_measure", "max_e", "mean_e", "iou",
    "weighted_f", "max_f_per_image",
)  # fmt: skip

_TABLE_COLUMNS = (  # (metric key, column title, higher is better)
    ("max_f", "max F", True),
    ("mean_f", "mean F", True),
    ("adaptive_f", "adp F", True),
    ("weighted_f", "wF", True),
    ("s_measure", "S", True),
    ("max_e", "max E", True),
    ("mean_e", "mean E", True),
    ("mae", "MAE", False),
    ("iou", "IoU@0.5", True),
)


def result_to_json(result: EvaluationResult) -> dict[str, Any]:
    """One run as a JSON-ready dict (contract keys first)."""
    metrics = dict(result.metrics)
    out: dict[str, Any] = {key: metrics.pop(key) for key in CONTRACT_KEYS}
    out.update(metrics)
    out["count"] = int(out["count"])
    out["name"] = result.name
    out["curves"] = {key: np.asarray(value).tolist() for key, value in result.curves.items()}
    out["pairing"] = result.pairing
    return out


def result_from_json(data: dict[str, Any]) -> EvaluationResult:
    """The inverse of `result_to_json`, e.g. to plot runs saved earlier."""
    missing = [key for key in (*CONTRACT_KEYS, "curves") if key not in data]
    if missing:
        raise ValueError(f"metrics JSON lacks {missing}; write it with `autosod evaluate --json`")
    skip = {"name", "curves", "pairing"}
    metrics = {key: value for key, value in data.items() if key not in skip}
    curves = {key: np.asarray(value) for key, value in data["curves"].items()}
    return EvaluationResult(data.get("name", "run"), metrics, curves, data.get("pairing", {}))


def write_results(results: list[EvaluationResult], path: str | Path) -> Path:
    """Write one run as the contract object, several as `{"runs": [...]}`; returns the path."""
    if not results:
        raise ValueError("no evaluation results to write")
    runs = [result_to_json(result) for result in results]
    data = runs[0] if len(runs) == 1 else {"runs": runs}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def load_results(path: str | Path) -> list[EvaluationResult]:
    """Runs saved by `write_results` (one or several)."""
    data = json.loads(Path(path).read_text())
    runs = data.get("runs", [data])
    return [result_from_json(run) for run in runs]


def _cell(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def markdown_table(results: list[EvaluationResult]) -> str:
    """A Markdown table of the runs (best value per column in bold) and mismatch notes."""
    header = ["run", "images", *(title for _, title, _ in _TABLE_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {}
    for key, _, higher in _TABLE_COLUMNS:
        values = [result.metrics[key] for result in results]
        best[key] = max(values) if higher else min(values)
    for result in results:
        cells = [result.name, str(int(result.metrics["count"]))]
        for key, _, _ in _TABLE_COLUMNS:
            text = _cell(result.metrics[key])
            bold = len(results) > 1 and result.metrics[key] == best[key]
            cells.append(f"**{text}**" if bold else text)
        lines.append("| " + " | ".join(cells) + " |")
    for result in results:
        pairing = result.pairing
        counts = [
            f"{pairing.get(f'{kind}_predictions', 0)} {kind}"
            for kind in ("missing", "extra", "failed")
            if pairing.get(f"{kind}_predictions", 0)
        ]
        if counts:
            lines.append(f"\n{result.name}: " + ", ".join(counts) + " predictions (see JSON).")
    return "\n".join(lines)
