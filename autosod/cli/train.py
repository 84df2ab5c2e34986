"""The options of the training job, defined once for `autosod train` and `jobs/train.py`.

`train_command` is the typer command body both entry points register; it parses, builds a
`TrainJobConfig` and calls `autosod.training.job.run_train_job` (imported lazily: Ray and torch
are heavy, and `autosod --help` must stay fast).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

__all__ = ["train_command"]

_MODEL = "Model"
_TRAIN = "Training"
_JOB = "Job"

Stores = Annotated[list[str], typer.Argument(
    help="Mask stores to train on (local folders or s3://bucket/prefix), made by `autosod "
         "label`; their ok rows' soft pseudo-masks are the targets.", show_default=False)]
Run = Annotated[str, typer.Option(
    "--run", help="Run directory (local folder or s3://bucket/prefix/NAME). Rerunning the same "
    "command resumes from its latest checkpoint; the best checkpoint is named in best.json.",
    show_default=False)]
Preset = Annotated[str, typer.Option(
    help="small (256 px, 3 decoder layers, 10 queries: minutes on a 2-core CPU) or base "
         "(384 px, 6 layers, 20 queries: GPU clusters).", rich_help_panel=_MODEL)]
Decoder = Annotated[str | None, typer.Option(
    help="query (learned queries with objectness, default) or fpn (the plain baseline).",
    rich_help_panel=_MODEL)]
Weights = Annotated[str | None, typer.Option(
    help="Backbone weights: package:efficientnet-lite0 (default), a path, s3://... or hub.",
    rich_help_panel=_MODEL)]
InputSize = Annotated[int | None, typer.Option(
    help="Square training input in pixels (preset: 256 small, 384 base).",
    rich_help_panel=_MODEL)]
Epochs = Annotated[int | None, typer.Option(
    help="Epochs in all (a rerun continues up to this many; with a different count the "
         "cosine schedule is stretched or shortened to end there).", rich_help_panel=_TRAIN)]
BatchSize = Annotated[int | None, typer.Option(
    help="Global batch per step, split evenly over the workers (preset: 8 small).",
    rich_help_panel=_TRAIN)]
Lr = Annotated[float | None, typer.Option(
    help="Peak AdamW learning rate of the decoder (the backbone gets a tenth).",
    rich_help_panel=_TRAIN)]
MinQuality = Annotated[float | None, typer.Option(
    help="Leave out pseudo-masks whose stored quality score is below this (default 0).",
    rich_help_panel=_TRAIN)]
Seed = Annotated[int | None, typer.Option(
    help="Seed of the sampling, augmentation and the decoder's initial weights.",
    rich_help_panel=_TRAIN)]
ValGt = Annotated[list[str] | None, typer.Option(
    "--val-gt", help="Benchmark folder (images/ + masks/) whose ground-truth IoU and max F are "
    "reported each epoch (repeatable); never used to choose the best checkpoint.",
    rich_help_panel=_TRAIN, show_default=False)]
ValFraction = Annotated[float | None, typer.Option(
    help="Share of image ids held out, by a hash of the id, to validate on against the "
         "pseudo-masks (default 0.05); the best checkpoint is chosen on it.",
    rich_help_panel=_TRAIN)]
Workers = Annotated[int | None, typer.Option(
    help="Ray Train workers (default 1). CPU workers reserve min(1, (CPUs - 0.5) / workers) "
         "CPUs each, so that augmentation tasks keep half a CPU.", rich_help_panel=_JOB)]
Gpus = Annotated[bool, typer.Option(
    "--gpus/--no-gpus", help="One GPU per worker with NCCL and bf16 autocast (default: CPU "
    "workers with gloo).", rich_help_panel=_JOB)]
CpusPerWorker = Annotated[float | None, typer.Option(
    help="CPUs each worker reserves (default: see --workers; 1 with --gpus).",
    rich_help_panel=_JOB)]
Keep = Annotated[int | None, typer.Option(
    help="Checkpoints kept: the best N by validation IoU against the pseudo-masks (default 2).",
    rich_help_panel=_JOB)]
MaxFailures = Annotated[int | None, typer.Option(
    help="Worker-group restarts from the last checkpoint after a failure (-1: no limit).",
    rich_help_panel=_JOB)]
Address = Annotated[str | None, typer.Option(
    help="Ray address to join (default: the job's cluster under `ray job submit`, else start "
         "single-node Ray).", rich_help_panel=_JOB)]
EndpointUrl = Annotated[str | None, typer.Option(
    help="S3-compatible endpoint for s3:// stores, images and runs (default: AWS or "
         "$AWS_ENDPOINT_URL).", rich_help_panel=_JOB)]
InitFrom = Annotated[str | None, typer.Option(
    help="Start a new run from the weights of this run (its best checkpoint) or checkpoint "
         "file, e.g. round 1's when training round 2 of self-training (same architecture; a "
         "fresh optimiser and schedule).", rich_help_panel=_TRAIN)]
Progress = Annotated[bool, typer.Option(
    "--progress/--no-progress", help="Show Ray Data progress bars.", rich_help_panel=_JOB)]


def train_command(
    stores: Stores, run: Run, preset: Preset = "small", decoder: Decoder = None,
    weights: Weights = None, input_size: InputSize = None, epochs: Epochs = None,
    batch_size: BatchSize = None, lr: Lr = None, min_quality: MinQuality = None,
    seed: Seed = None, val_gt: ValGt = None, val_fraction: ValFraction = None,
    workers: Workers = None, gpus: Gpus = False,
    cpus_per_worker: CpusPerWorker = None, keep: Keep = None, max_failures: MaxFailures = None,
    address: Address = None, endpoint_url: EndpointUrl = None, init_from: InitFrom = None,
    progress: Progress = False,
) -> None:
    """Train an AutoSOD saliency network on pseudo-mask stores with Ray Train (resume: rerun)."""
    from autosod.training.job import TrainJobError, format_summary, run_train_job
    from autosod.training.job_config import build_train_config

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = build_train_config(
            stores=stores, run=run, preset_name=preset, endpoint_url=endpoint_url,
            model={"decoder": decoder, "weights": weights, "input_size_px": input_size},
            train={"epochs": epochs, "batch_size": batch_size, "lr": lr,
                   "min_quality": min_quality, "seed": seed},
            workers=workers, gpus=gpus, cpus_per_worker=cpus_per_worker, keep=keep,
            max_failures=max_failures, address=address, val_gt=tuple(val_gt or ()),
            val_fraction=val_fraction, init_from=init_from,
            progress=progress)
        summary = run_train_job(config)
    except (TrainJobError, ValueError, TypeError, FileNotFoundError) as exc:
        typer.echo(f"autosod train: error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(format_summary(summary))
