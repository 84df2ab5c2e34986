"""The options of the prediction job, defined once for `autosod predict` and `jobs/predict.py`.

`predict_command` is the typer command body both entry points register; it parses, builds a
`PredictJobConfig` and calls `autosod.prediction.job.run_predict_job` (imported lazily: Ray and
torch are heavy). The job options are the labelling command's (autosod/cli/label.py).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from autosod.cli.label import (
    ActorCpus,
    Actors,
    ActorsOn,
    Address,
    BatchSize,
    EndpointUrl,
    Mode,
    PartRows,
    Progress,
    RetryFailed,
    ShardSize,
    Store,
)

__all__ = ["predict_command"]

_MODEL = "Model"
_JOB = "Job"

Checkpoint = Annotated[str, typer.Argument(
    help="A training run directory (its best checkpoint; local or s3://) or a checkpoint file "
         "(.pt).")]
Source = Annotated[str, typer.Argument(
    help="Images to predict: a folder (recursive), a glob, s3://bucket/prefix, a text file of "
         "URIs, or a manifest .parquet.")]
Out = Annotated[str | None, typer.Option(
    help="Also export the masks as <image stem>.png into this folder when done.",
    rich_help_panel=_JOB)]
Size = Annotated[int | None, typer.Option(
    help="Square network input in pixels (default: the run's prediction size, e.g. 320).",
    rich_help_panel=_MODEL)]
Flip = Annotated[bool | None, typer.Option(
    "--flip-average/--no-flip-average", help="Average with the prediction of the flipped image "
    "(default: as the run validated).", rich_help_panel=_MODEL, show_default=False)]
MaskThreshold = Annotated[float | None, typer.Option(
    help="Binary mask = soft map >= this threshold (default 0.5).", rich_help_panel=_MODEL)]
Device = Annotated[str | None, typer.Option(
    help="Torch device inside each actor: cpu, cuda, cuda:N or auto (cuda when available).",
    rich_help_panel=_MODEL)]
Bf16 = Annotated[bool | None, typer.Option(
    "--bf16/--no-bf16", help="bfloat16 autocast of the network on GPU actors (default on).",
    rich_help_panel=_MODEL, show_default=False)]
Limit = Annotated[int | None, typer.Option(
    help="Predict at most the first N images of the manifest.", rich_help_panel=_JOB)]


def predict_command(
    checkpoint: Checkpoint, source: Source, store: Store, out: Out = None, size: Size = None,
    flip_average: Flip = None, mask_threshold: MaskThreshold = None, device: Device = None,
    bf16: Bf16 = None, batch_size: BatchSize = None, actors: Actors = None,
    actor_cpus: ActorCpus = None, actors_on: ActorsOn = None, limit: Limit = None,
    address: Address = None, mode: Mode = None, endpoint_url: EndpointUrl = None,
    shard_size: ShardSize = None, part_rows: PartRows = None, retry_failed: RetryFailed = None,
    progress: Progress = True,
) -> None:
    """Predict masks for SOURCE with a trained model into the store (resume: rerun it)."""
    from autosod.prediction.config import build_predict_config
    from autosod.prediction.job import (
        CheckpointError,
        PreflightError,
        format_summary,
        run_predict_job,
    )
    from autosod.store_tools.export import export_store

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = build_predict_config(
            checkpoint=checkpoint, source=source, store=store, endpoint_url=endpoint_url,
            size_px=size, flip_average=flip_average, mask_threshold=mask_threshold,
            device=device, bf16=bf16, batch_size=batch_size, num_actors=actors,
            actor_cpus=actor_cpus, actor_resources=actors_on, limit=limit, address=address,
            mode=mode, shard_size=shard_size, part_rows=part_rows, retry_failed=retry_failed,
            progress=progress)
        summary = run_predict_job(config)
        typer.echo(format_summary(summary))
        if out is not None:
            result = export_store(store, out, storage_options=config.storage_options)
            typer.echo(f"wrote {result.written} PNGs to {result.out}")
    except (CheckpointError, PreflightError, ValueError, TypeError, FileNotFoundError) as exc:
        typer.echo(f"autosod predict: error: {exc}", err=True)
        raise typer.Exit(2) from exc
