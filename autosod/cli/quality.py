"""Options of the pseudo-mask quality ablation, defined once for `autosod quality` and
`python jobs/benchmark.py quality`; `quality_command` parses, builds the configs and calls
`autosod.benchmarks.quality.run_quality`."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from autosod.cli.label import (
    Backbone,
    Cam,
    Device,
    Eps,
    InputSize,
    KHigh,
    KLow,
    Mean,
    Seed,
    SplitQuantile,
    Stages,
    Std,
    Temperature,
    TopClasses,
    Weights,
    WeightsMapping,
)

__all__ = ["build_quality_config", "quality_command"]


Data = Annotated[list[str], typer.Option(
    "--data", help="Benchmark folder (images/ + masks/); repeat for several sets.")]
JsonPath = Annotated[str, typer.Option(
    "--json", help="Write the table (every set and variant) as JSON to this file.")]
Figure = Annotated[str | None, typer.Option(
    help="Overlay figure PNG (default: <json without .json>_overlays.png).")]
FigureImages = Annotated[int, typer.Option(
    help="Images per set in the overlay figure (0: no figure).")]
Variant = Annotated[list[str] | None, typer.Option(
    "--variant", help="Variant to run (repeat; default all): cam, ncut, kmeans, spectral, "
    "dual_no_transport, potnet.")]
Limit = Annotated[int | None, typer.Option(help="Use only the first N images of each set.")]


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def build_quality_config(labeler: dict[str, Any], potnet: dict[str, Any]) -> Any:
    """`LabelerConfig` from the defaults and the options given (None = not given)."""
    from autosod.labeling.config import LabelerConfig, parse_channels, parse_stages
    from autosod.potnet import PotnetConfig

    labeler = _given(labeler)
    if isinstance(labeler.get("stages"), str):
        labeler["stages"] = parse_stages(labeler["stages"])
    for name in ("mean", "std"):
        if isinstance(labeler.get(name), str):
            labeler[name] = parse_channels(labeler[name])
    head = dataclasses.replace(PotnetConfig(), **_given(potnet))
    return LabelerConfig(**labeler, potnet=head)


def quality_command(
    data: Data, json_path: JsonPath, figure: Figure = None, figure_images: FigureImages = 3,
    variant: Variant = None, limit: Limit = None, backbone: Backbone = None,
    weights: Weights = None, mean: Mean = None, std: Std = None,
    weights_mapping: WeightsMapping = None, cam: Cam = None, top_classes: TopClasses = None,
    stages: Stages = None, input_size: InputSize = None, device: Device = None,
    k_low: KLow = None, k_high: KHigh = None, split_quantile: SplitQuantile = None,
    eps: Eps = None, temperature: Temperature = None, seed: Seed = None,
) -> None:
    """Pseudo-mask ablation: CAM, Ncut, k-means, spectral, dual without transport and POTNet
    on identical features of each --data folder; a table (JSON, Markdown) and an overlay PNG."""
    from autosod.benchmarks.quality import markdown_quality_table, run_quality
    from autosod.benchmarks.quality_variants import VARIANTS

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if figure is None and figure_images > 0:
        figure = str(Path(json_path).with_suffix("")) + "_overlays.png"
    try:
        config = build_quality_config(
            {"model_name": backbone, "weights": weights, "mean": mean, "std": std,
             "weights_mapping": weights_mapping, "cam": cam, "top_classes": top_classes,
             "stages": stages, "input_size": input_size, "device": device},
            {"k_low": k_low, "k_high": k_high, "split_quantile": split_quantile, "eps": eps,
             "temperature": temperature, "seed": seed})
        result = run_quality(data, config, variants=variant or tuple(VARIANTS), limit=limit,
                             json_path=json_path, figure_path=figure if figure_images else None,
                             figure_images=figure_images)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        typer.echo(f"quality: error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(markdown_quality_table(result))
