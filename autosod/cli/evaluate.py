"""The options of `autosod evaluate` and `python jobs/evaluate.py`, defined once.

`evaluate_command` streams the evaluation in this process; `evaluate_job_command` takes the same
options plus the cluster's, and runs it over Ray Data (`autosod.evaluation.job`, imported lazily).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the library is imported when a command runs, so `autosod --help` stays fast
    from autosod.evaluation.evaluate import EvaluationResult

__all__ = ["evaluate_command", "evaluate_job_command"]

_JOB = "Job"

Pred = Annotated[
    list[str],
    typer.Option(
        "--pred",
        help="Predictions: a mask store or a folder of <image stem>.png soft maps (local "
        "or s3://). Repeat to compare several runs.",
    ),
]
Gt = Annotated[
    str,
    typer.Option(
        "--gt", help="Benchmark folder with images/ and masks/ (or gt/), masks named by stem."
    ),
]
JsonFile = Annotated[
    str | None,
    typer.Option("--json", help='Write the metrics JSON here (several runs: {"runs": [...]}).'),
]
Plots = Annotated[
    str | None,
    typer.Option(
        "--plots", help="Write pr_curve.png and f_threshold.png (runs overlaid) into this folder."
    ),
]
Strict = Annotated[
    bool,
    typer.Option(
        "--strict/--no-strict",
        help="Exit 1 when a mask has no prediction or a prediction failed "
        "(always reported either way).",
    ),
]
EndpointUrl = Annotated[
    str | None,
    typer.Option(
        help="S3-compatible endpoint for s3:// inputs (default: AWS or $AWS_ENDPOINT_URL)."
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        help="Ray address to join (default: the job's cluster under `ray job submit`, else start "
        "single-node Ray).",
        rich_help_panel=_JOB,
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(
        help="Pairs per Ray Data batch (one accumulator state per batch).", rich_help_panel=_JOB
    ),
]


def _run(
    evaluate: Callable[[str, str], EvaluationResult],
    pred: list[str],
    gt: str,
    json: str | None,
    plots: str | None,
    strict: bool,
) -> None:
    from autosod.evaluation.runs import unique_names, write_outputs
    from autosod.io.store.commit_log import CommitLogError

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        results = [evaluate(p, name) for p, name in zip(pred, unique_names(pred), strict=True)]
        typer.echo(write_outputs(results, json_path=json, plots_dir=plots))
    except (ValueError, TypeError, FileNotFoundError, CommitLogError) as exc:
        typer.echo(f"autosod evaluate: error: {exc}", err=True)
        raise typer.Exit(2) from exc
    unmatched = sum(
        r.pairing["missing_predictions"] + r.pairing["failed_predictions"] for r in results
    )
    if strict and unmatched:
        typer.echo(f"autosod evaluate: {unmatched} masks lack a usable prediction", err=True)
        raise typer.Exit(1)


def evaluate_command(
    pred: Pred,
    gt: Gt,
    json: JsonFile = None,
    plots: Plots = None,
    strict: Strict = False,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Score predictions against a benchmark: JSON metrics, a Markdown table and plots."""
    from autosod.evaluation.runs import evaluate_source
    from autosod.io.filesystem import storage_options_for

    options = storage_options_for(endpoint_url) or None

    def run(p: str, name: str) -> EvaluationResult:
        return evaluate_source(p, gt, name=name, storage_options=options)

    _run(run, pred, gt, json, plots, strict)


def evaluate_job_command(
    pred: Pred,
    gt: Gt,
    json: JsonFile = None,
    plots: Plots = None,
    strict: Strict = False,
    endpoint_url: EndpointUrl = None,
    address: Address = None,
    batch_size: BatchSize = 64,
) -> None:
    """Score predictions against a benchmark over Ray Data (same outputs as autosod evaluate)."""
    from autosod.evaluation.job import EvaluationJobConfig, run_evaluation_job
    from autosod.io.filesystem import storage_options_for

    options = storage_options_for(endpoint_url) or None

    def run(p: str, name: str) -> EvaluationResult:
        return run_evaluation_job(EvaluationJobConfig(
            pred=p, gt=gt, name=name, storage_options=options, address=address,
            batch_size=batch_size))

    _run(run, pred, gt, json, plots, strict)
