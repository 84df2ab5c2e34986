"""Benchmarks: `python jobs/benchmark.py SUBCOMMAND --json FILE` (potnet, io, plan, list-s3,
label, evaluate, pseudo-iou, quality, train, predict).

Each subcommand parses its options and calls one function of `autosod.benchmarks`; results are
recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import json

import typer

from autosod.cli.label import Backbone, Mean, Stages, Std, Weights, WeightsMapping


def _emit(figures: object, json_path: str | None) -> None:
    """Print the figures as JSON, and write them to `json_path` when given."""
    text = json.dumps(figures, indent=2)
    typer.echo(text)
    if json_path:
        with open(json_path, "w") as handle:
            handle.write(text + "\n")


app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


@app.callback()
def _benchmarks() -> None:
    """Keeps subcommand names required even while only one subcommand is registered."""


@app.command()
def evaluate(
    pairs: int = typer.Option(5000, help="Generated mask/soft-map pairs to evaluate."),
    size_px: int = typer.Option(320, help="Side of each generated square image in pixels."),
    reference: bool = typer.Option(True, "--reference/--no-reference",
                                   help="Also time pysodmetrics on the same pairs."),
    json_path: str | None = typer.Option(None, "--json", help="Write the figures here."),
) -> None:
    """Evaluation speed (pairs/s) and memory growth vs pysodmetrics on generated pairs."""
    import logging

    from autosod.benchmarks.evaluate import run_evaluate_benchmark

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    figures = run_evaluate_benchmark(pairs=pairs, size_px=size_px, reference=reference)
    _emit(figures, json_path)


@app.command("io")
def io_(
    files: int = typer.Option(100_000, help="Empty *.jpg files to create and list."),
    rows: int = typer.Option(100_000, help="Rows to write to and read from a local mask store."),
    repeats: int = typer.Option(3, help="Timings are the best of this many runs."),
    workdir: str | None = typer.Option(None, help="Folder for the temporary files (default: "
                                       "the system temp folder)."),
    json_path: str | None = typer.Option(None, "--json", help="Write the figures here."),
) -> None:
    """Manifest listing (files/s) and store reads (rows/s) vs os.walk and plain pyarrow."""
    import logging

    from autosod.benchmarks.io import run_io_benchmark

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    figures = run_io_benchmark(files=files, rows=rows, repeats=repeats, workdir=workdir)
    _emit(figures, json_path)


@app.command("potnet")
def potnet(
    json_path: str = typer.Option(..., "--json", help="Write the results as JSON to this file."),
    batch: int = typer.Option(64, help="Images per batch given to the head."),
    positions: list[int] = typer.Option([784, 1600], help="Feature positions N (squares)."),
    dim: int = typer.Option(384, help="Feature channels D."),
    repeats: int = typer.Option(3, help="Timed runs of the head; the best one counts."),
    backend: str = typer.Option("numpy", help="Array module of the head: numpy or cupy."),
    seed: int = typer.Option(0, help="Seed of the inputs and of the head."),
    threads: int | None = typer.Option(None, help="Cap BLAS/OpenMP threads of both sides."),
) -> None:
    """Time the POTNet head against per-image scikit-learn + POT, in one run."""
    import logging

    from autosod.benchmarks.potnet import run_potnet_benchmark

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    rows = run_potnet_benchmark(
        batch=batch,
        positions=positions,
        dim=dim,
        repeats=repeats,
        backend=backend,
        seed=seed,
        threads=threads,
    )
    _emit(rows, json_path)


@app.command("pseudo-iou")
def pseudo_iou(
    benchmarks: list[str] = typer.Argument(..., help="Benchmark folders (images/ + masks/)."),
    limit: int | None = typer.Option(None, help="Label only the first N images of each folder."),
    batch_size: int = typer.Option(16, help="Images per backbone + head call."),
    input_size: int | None = typer.Option(None, help="Square network input in pixels."),
    cam: str | None = typer.Option(None, help="CAM source: classifier, attention or pca."),
    transport: bool | None = typer.Option(None, "--transport/--no-transport",
                                          help="Optimal transport (default) or nearest prototype."),
    backbone: Backbone = None, weights: Weights = None, stages: Stages = None,
    mean: Mean = None, std: Std = None, weights_mapping: WeightsMapping = None,
    json_path: str | None = typer.Option(None, "--json", help="Write the figures here."),
) -> None:
    """Mean IoU (and max F, MAE) of pseudo-masks and of the CAM alone on benchmark folders,
    and the single-process labelling speed (img/s)."""
    import logging

    from autosod.benchmarks.pseudo_quality import run_pseudo_quality
    from autosod.labeling.config import parse_channels, parse_stages

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    labeler = {"input_size": input_size, "cam": cam, "model_name": backbone, "weights": weights,
               "stages": parse_stages(stages) if stages else None,
               "mean": parse_channels(mean) if mean else None,
               "std": parse_channels(std) if std else None, "weights_mapping": weights_mapping}
    rows = run_pseudo_quality(benchmarks, limit=limit, batch_size=batch_size, labeler=labeler,
                              potnet={"transport": transport})
    _emit(rows, json_path)


@app.command("label")
def label(
    images: int = typer.Option(400, help="Generated images (240-480 px JPEG/PNG scenes)."),
    input_size: int | None = typer.Option(None, help="Square network input in pixels "
                                          "(default: the labeller's)."),
    batch_size: int = typer.Option(16, help="Images per actor call."),
    actors: int | None = typer.Option(None, help="POTNet actors (default: the job's plan)."),
    actor_cpus: float | None = typer.Option(None, help="CPUs (and threads) per actor "
                                            "(default: the job's plan)."),
    device: str = typer.Option("cpu", help="cpu, or cuda: GPU actors with bf16 autocast and "
                               "the CuPy head, references on the same GPU."),
    reference_images: int = typer.Option(64, help="Images of the single-process and "
                                         "forward-only references."),
    json_path: str | None = typer.Option(None, "--json", help="Write the figures here."),
) -> None:
    """The labelling job on single-node Ray vs a single-process loop and the backbone alone."""
    import logging

    from autosod.benchmarks.label import run_label_benchmark

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    figures = run_label_benchmark(images=images, input_size=input_size, batch_size=batch_size,
                                  actors=actors, actor_cpus=actor_cpus, device=device,
                                  reference_images=reference_images)
    _emit(figures, json_path)


@app.command("plan")
def plan(
    images: int = typer.Option(10_000_000, help="Rows of the synthetic manifest."),
    committed: int = typer.Option(5_000_000, help="Ids already committed in the store."),
    part_rows: int = typer.Option(2000, help="Ids per commit record of the synthetic store."),
    workdir: str | None = typer.Option(None, help="Folder for the synthetic store (default: "
                                       "the system temp folder)."),
    json_path: str | None = typer.Option(None, "--json", help="Write the figures here."),
) -> None:
    """The labelling driver before the first batch reaches an actor: seconds and peak RSS."""
    import logging

    from autosod.benchmarks.plan import run_plan_benchmark

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    figures = run_plan_benchmark(images=images, committed=committed, part_rows=part_rows,
                                 workdir=workdir)
    _emit(figures, json_path)


@app.command("list-s3")
def list_s3(
    keys: int = typer.Option(20_000, help="Objects to create under one flat prefix."),
    naming: str = typer.Option("numbered", help="Key names: numbered (img_00000001.jpg) or "
                               "hashed (16 hex characters)."),
    repeats: int = typer.Option(3, help="Timings are the best of this many listings."),
    endpoint_url: str | None = typer.Option(None, help="S3 endpoint (default: start a moto "
                                            "server on loopback)."),
    json_path: str | None = typer.Option(None, "--json", help="Write the figures here."),
) -> None:
    """Listing a flat S3 prefix: parallel key ranges vs one range vs s3fs find."""
    import logging

    from autosod.benchmarks.listing import run_listing_benchmark

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    figures = run_listing_benchmark(keys=keys, naming=naming, repeats=repeats,
                                    endpoint_url=endpoint_url)
    _emit(figures, json_path)


@app.command("train")
def train(
    stores: list[str] | None = typer.Argument(None, help="Mask stores to train on (default: "
                                              "generated scenes labelled in this process)."),
    images: int = typer.Option(96, help="Generated scenes to label when no store is given."),
    epochs: int = typer.Option(3, help="Epochs; the first includes the data pipeline's start."),
    workers: int = typer.Option(1, help="Ray Train workers."),
    gpus: bool = typer.Option(False, "--gpus/--no-gpus", help="One GPU per worker (NCCL)."),
    preset: str = typer.Option("small", help="Training preset: small or base."),
    batch_size: int | None = typer.Option(None, help="Global batch (default: the preset's)."),
    input_size: int | None = typer.Option(None, help="Training input px (default: preset's)."),
    json_path: str | None = typer.Option(None, "--json", help="Write the figures here."),
) -> None:
    """The training job: images/s (in all and per worker) and the share of step time spent
    waiting for data, per epoch, with a single-process compute-only reference."""
    import logging

    from autosod.benchmarks.train import run_train_benchmark

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    figures = run_train_benchmark(stores=stores, images=images, epochs=epochs, workers=workers,
                                  gpus=gpus, preset_name=preset, batch_size=batch_size,
                                  input_size=input_size)
    _emit(figures, json_path)


@app.command("predict")
def predict(
    checkpoint: str | None = typer.Argument(None, help="A run directory or checkpoint file "
                                            "(default: the small preset, untrained decoder)."),
    source: str | None = typer.Option(None, help="Images to predict (default: generated "
                                      "240-480 px scenes)."),
    images: int = typer.Option(128, help="Images (the first of the source, or generated)."),
    batch_size: int = typer.Option(16, help="Images per actor call."),
    actors: int | None = typer.Option(None, help="Actors (default: the job's plan)."),
    json_path: str | None = typer.Option(None, "--json", help="Write the figures here."),
) -> None:
    """The prediction job on single-node Ray vs a single-process loop over the same images."""
    import logging

    from autosod.benchmarks.predict import run_predict_benchmark

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _emit(run_predict_benchmark(checkpoint=checkpoint, source=source, images=images,
                                batch_size=batch_size, actors=actors), json_path)


# quality: options shared with `autosod quality` (autosod/cli/quality.py)
from autosod.cli.quality import quality_command  # noqa: E402

app.command("quality")(quality_command)


if __name__ == "__main__":
    app()
