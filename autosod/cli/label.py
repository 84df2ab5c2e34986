"""The options of the labelling job, defined once for `autosod label` and `jobs/label.py`.

`label_command` is the typer command body both entry points register; it parses, builds a
`LabelJobConfig` and calls `autosod.labeling.run_label_job` (imported lazily: Ray is heavy).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

__all__ = ["label_command"]

_HEAD = "POTNet head"
_JOB = "Job"
_MODEL = "Backbone"

Source = Annotated[str, typer.Argument(
    help="Images to label: a folder (recursive), a glob, s3://bucket/prefix, a text file of "
         "URIs, or a manifest .parquet.")]
Store = Annotated[str, typer.Option(
    "--store", help="Mask store to write: a local folder or s3://bucket/prefix.")]
Backbone = Annotated[str | None, typer.Option(
    help="timm architecture name (default efficientnet_lite2; efficientnet_lite0 and "
         "efficientnet_lite1 load their packaged weights too; e.g. vit_small_patch8_224.dino).",
    rich_help_panel=_MODEL)]
Weights = Annotated[str | None, typer.Option(
    help="Backbone weights: package:efficientnet-lite0|1|2 (default: the backbone's packaged "
         "weights), a local path, s3://..., or hub.", rich_help_panel=_MODEL)]
Mean = Annotated[str | None, typer.Option(
    help="Input normalisation mean, one number or R,G,B (default: the weights' own: 0.5 for "
         "the packaged EfficientNet-Lites, else timm's for the backbone). Recorded in the "
         "store's config.", rich_help_panel=_MODEL)]
Std = Annotated[str | None, typer.Option(
    help="Input normalisation std, one number or R,G,B (given with --mean).",
    rich_help_panel=_MODEL)]
WeightsMapping = Annotated[str | None, typer.Option(
    help="How the file's tensors meet the model's: by-name, or in-order (other names, same "
         "order and shapes, e.g. a TensorFlow port). Default: in-order for package:, else "
         "by-name.", rich_help_panel=_MODEL)]
Cam = Annotated[str | None, typer.Option(
    help="Class activation source (classifier, attention, pca).", rich_help_panel=_MODEL)]
InputSize = Annotated[int | None, typer.Option(
    help="Square network input size in pixels (images are resized to it; default 384).",
    rich_help_panel=_MODEL)]
Device = Annotated[str | None, typer.Option(
    help="Torch device inside each actor: cpu, cuda, cuda:N or auto (cuda when available).",
    rich_help_panel=_MODEL)]
Bf16 = Annotated[bool | None, typer.Option(
    "--bf16/--no-bf16", help="bfloat16 autocast of the backbone on CUDA actors (default on).",
    rich_help_panel=_MODEL, show_default=False)]
TopClasses = Annotated[int | None, typer.Option(
    help="C: classes of the classifier CAM (default 1).", rich_help_panel=_MODEL)]
Stages = Annotated[str | None, typer.Option(
    help="CNN feature stages to concatenate, comma-separated (default 0,1,2,3,4).",
    rich_help_panel=_MODEL)]
KLow = Annotated[int | None, typer.Option(
    help="k-means prototypes of the low-entropy branch.", rich_help_panel=_HEAD)]
KHigh = Annotated[int | None, typer.Option(
    help="Spectral prototypes of the high-entropy branch.", rich_help_panel=_HEAD)]
Clustering = Annotated[str | None, typer.Option(
    help="dual (default), kmeans or spectral.", rich_help_panel=_HEAD)]
Transport = Annotated[bool | None, typer.Option(
    "--transport/--no-transport", help="Fuse by optimal transport (default) or nearest "
    "prototype.", rich_help_panel=_HEAD, show_default=False)]
SplitQuantile = Annotated[float | None, typer.Option(
    help="q: the entropy threshold is the q-quantile of each image's entropy.",
    rich_help_panel=_HEAD)]
Temperature = Annotated[float | None, typer.Option(
    help="t of the prototype masses softmax(max_c cos / t).", rich_help_panel=_HEAD)]
Eps = Annotated[float | None, typer.Option(
    help="Entropic regularisation of the transport.", rich_help_panel=_HEAD)]
MaskThreshold = Annotated[float | None, typer.Option(
    help="Binary mask = soft map >= this threshold.", rich_help_panel=_HEAD)]
Seed = Annotated[int | None, typer.Option(
    help="Seed of k-means++ and the subspace solver.", rich_help_panel=_HEAD)]
BatchSize = Annotated[int | None, typer.Option(
    help="Images per actor call (default 16).", rich_help_panel=_JOB)]
Actors = Annotated[int | None, typer.Option(
    help="POTNet actors (default: one per GPU; on CPU nodes one single-threaded actor per core "
         "that decoding does not need).", rich_help_panel=_JOB)]
ActorCpus = Annotated[float | None, typer.Option(
    help="CPUs reserved per POTNet actor, and its torch/BLAS threads (default: the plan's: "
         "a few per GPU actor; on CPU nodes the cores decoding does not need, shared out).",
    rich_help_panel=_JOB)]
ActorsOn = Annotated[str | None, typer.Option(
    help="auto (GPU actors when the cluster has GPUs), gpu (num_gpus=1 per actor; logical "
         "GPUs when starting local Ray) or cpu.", rich_help_panel=_JOB)]
Limit = Annotated[int | None, typer.Option(
    help="Label at most the first N images of the manifest.", rich_help_panel=_JOB)]
Address = Annotated[str | None, typer.Option(
    help="Ray address to join (default: the job's cluster under `ray job submit`, else start "
         "single-node Ray).", rich_help_panel=_JOB)]
Mode = Annotated[str | None, typer.Option(
    help="resume (default: skip committed images) or overwrite (clear the store first).",
    rich_help_panel=_JOB)]
EndpointUrl = Annotated[str | None, typer.Option(
    help="S3-compatible endpoint for s3:// sources and stores (default: AWS or "
         "$AWS_ENDPOINT_URL).", rich_help_panel=_JOB)]
ShardSize = Annotated[int | None, typer.Option(
    help="Manifest rows per shard (default 1000).", rich_help_panel=_JOB)]
PartRows = Annotated[int | None, typer.Option(
    help="Rows per store part, i.e. per data file and commit (default 2000).",
    rich_help_panel=_JOB)]
RetryFailed = Annotated[bool | None, typer.Option(
    "--retry-failed/--no-retry-failed", help="On resume, label again the images whose last "
    "try failed with a retryable status (read_error, model_error); default on. Permanent "
    "failures (not_an_image, truncated, ...) are never retried.", rich_help_panel=_JOB,
    show_default=False)]
Progress = Annotated[bool, typer.Option(
    "--progress/--no-progress", help="Show Ray Data progress bars.", rich_help_panel=_JOB)]


def label_command(
    source: Source, store: Store, backbone: Backbone = None, weights: Weights = None,
    mean: Mean = None, std: Std = None, weights_mapping: WeightsMapping = None,
    cam: Cam = None, top_classes: TopClasses = None, stages: Stages = None,
    input_size: InputSize = None, device: Device = None, k_low: KLow = None,
    k_high: KHigh = None, clustering: Clustering = None, transport: Transport = None,
    split_quantile: SplitQuantile = None, temperature: Temperature = None,
    eps: Eps = None, mask_threshold: MaskThreshold = None, seed: Seed = None,
    bf16: Bf16 = None, batch_size: BatchSize = None, actors: Actors = None,
    actor_cpus: ActorCpus = None, actors_on: ActorsOn = None,
    limit: Limit = None, address: Address = None, mode: Mode = None,
    endpoint_url: EndpointUrl = None, shard_size: ShardSize = None, part_rows: PartRows = None,
    retry_failed: RetryFailed = None, progress: Progress = True,
) -> None:
    """Label SOURCE with POTNet pseudo-masks into the store (resume: rerun the same command)."""
    from autosod.labeling.config import build_label_config, parse_channels, parse_stages
    from autosod.labeling.job import PreflightError, format_summary, run_label_job

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = build_label_config(
            source=source, store=store, endpoint_url=endpoint_url,
            labeler={"model_name": backbone, "weights": weights, "cam": cam,
                     "mean": parse_channels(mean) if mean is not None else None,
                     "std": parse_channels(std) if std is not None else None,
                     "weights_mapping": weights_mapping, "top_classes": top_classes,
                     "stages": parse_stages(stages) if stages is not None else None,
                     "input_size": input_size, "device": device},
            potnet={"k_low": k_low, "k_high": k_high, "clustering": clustering,
                    "transport": transport, "split_quantile": split_quantile,
                    "temperature": temperature, "eps": eps,
                    "mask_threshold": mask_threshold, "seed": seed},
            bf16=bf16, batch_size=batch_size, num_actors=actors, actor_cpus=actor_cpus,
            actor_resources=actors_on,
            limit=limit, address=address, mode=mode, shard_size=shard_size, part_rows=part_rows,
            retry_failed=retry_failed, progress=progress)
        summary = run_label_job(config)
    except (PreflightError, ValueError, TypeError, FileNotFoundError) as exc:
        typer.echo(f"autosod label: error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(format_summary(summary))
