"""Pseudo-mask quality ablation: every variant on identical features, scored by the evaluation
module (`python jobs/benchmark.py quality` and `autosod quality`).

For each benchmark folder the backbone runs once (`quality_features`); each variant of
`quality_variants.VARIANTS` turns the same features and CAMs into soft maps on the grid, which
are upsampled bilinearly to each image's size (as the labelling job does) and scored against the
masks with `SodMetrics` (soft map for the F curves, MAE and S-measure; IoU of the map > 0.5).
Each variant's masks are ranked by `autosod.potnet.mask_quality.mask_quality` (and by the
head's own spread mean |2 s - 1|): the table reports the mean IoU of the more confident half
against the less confident half.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autosod.benchmarks.quality_features import FeatureSet, extract_feature_set
from autosod.benchmarks.quality_variants import VARIANTS, VariantMaps, run_variant
from autosod.evaluation.metrics import SodMetrics
from autosod.evaluation.pixelwise import IouAccumulator
from autosod.labeling.config import LabelerConfig
from autosod.labeling.labeler import upsample_grid
from autosod.potnet.mask_quality import mask_quality

__all__ = [
    "TABLE_METRICS",
    "VariantScores",
    "markdown_quality_table",
    "ranked_halves",
    "run_quality",
    "score_maps",
]

logger = logging.getLogger(__name__)

TABLE_METRICS = ("max_f", "mean_f", "mae", "s_measure", "iou")


@dataclass(frozen=True)
class VariantScores:
    """metrics: the SodMetrics scalars; iou_per_image (n,); soft_spread (n,)."""

    metrics: dict[str, float]
    iou_per_image: np.ndarray
    soft_spread: np.ndarray


def full_size_maps(features: FeatureSet, soft: np.ndarray) -> list[np.ndarray]:
    """soft (m, N) on the grid for the first m images -> per image float32 (H, W) in [0, 1],
    bilinear."""
    grid_maps = torch.from_numpy(np.ascontiguousarray(soft, dtype=np.float32))
    return [
        upsample_grid(grid_maps[i], features.grid, (int(h), int(w))).numpy()
        for i, (h, w) in enumerate(features.sizes[: len(soft)])
    ]


def score_maps(
    features: FeatureSet, maps: VariantMaps, gts: Sequence[np.ndarray], *, full: bool = True
) -> VariantScores:
    """Score grid soft maps (n, N) against the GT masks [(H, W) bool]. `full=False` skips the
    E-measure, S-measure and weighted F (for sweeps): only max/mean F, MAE and IoU."""
    metrics = SodMetrics()
    if not full:
        metrics.parts = {k: v for k, v in metrics.parts.items() if k in ("fmeasure", "mae", "iou")}
    ious = np.zeros(len(gts), dtype=np.float64)
    for index, (pred, gt) in enumerate(zip(full_size_maps(features, maps.soft), gts, strict=True)):
        metrics.update(pred, gt)
        single = IouAccumulator()
        single.update(pred, gt)
        ious[index] = single.compute()["iou"]
    return VariantScores(metrics.compute(), ious, maps.soft_spread)


def ranked_halves(scores: np.ndarray, ious: np.ndarray) -> dict[str, float]:
    """Mean IoU of the more confident half of the images against the less confident half
    (ranked by `scores`, ties by index; an odd middle image joins the less confident half)."""
    if len(scores) != len(ious) or len(ious) < 2:
        raise ValueError(
            f"need >= 2 images with one score each, got {len(scores)} scores and "
            f"{len(ious)} IoUs"
        )
    order = np.argsort(-np.asarray(scores), kind="stable")
    top = order[: len(order) // 2]
    rest = order[len(order) // 2 :]
    return {
        "confident_iou": float(np.mean(ious[top])),
        "other_iou": float(np.mean(ious[rest])),
        "confident_count": len(top),
        "other_count": len(rest),
    }


def _evaluate_set(
    features: FeatureSet, config: LabelerConfig, variants: Sequence[str]
) -> dict[str, dict[str, Any]]:
    gts = [features.gt(i) for i in range(len(features))]
    table: dict[str, dict[str, Any]] = {}
    for name in variants:
        start = time.perf_counter()
        maps = run_variant(name, features.feats, features.cams, config.potnet)
        seconds = time.perf_counter() - start
        scores = score_maps(features, maps, gts)
        row = {key: scores.metrics[key] for key in ("count", *TABLE_METRICS)}
        quality = mask_quality(features.feats, maps.soft >= 0.5, features.grid)
        row.update(ranked_halves(quality, scores.iou_per_image))
        spread = ranked_halves(scores.soft_spread, scores.iou_per_image)
        row.update({f"spread_{key}": value for key, value in spread.items()})
        row["head_seconds"] = seconds
        table[name] = row
        logger.info("%s / %s: %s", features.name, name, row)
    return table


def run_quality(
    benchmarks: Sequence[str],
    config: LabelerConfig | None = None,
    *,
    variants: Sequence[str] = tuple(VARIANTS),
    limit: int | None = None,
    json_path: str | Path | None = None,
    figure_path: str | Path | None = None,
    figure_images: int = 3,
) -> dict[str, Any]:
    """The ablation on each benchmark folder; returns {"config", "sets": {set: {variant: row}}}.

    Features are computed once per folder and shared by every variant. Writes the JSON to
    `json_path` and an overlay figure (`figure_images` per set) to `figure_path` when given.
    """
    from autosod.benchmarks.quality_figure import write_overlay_figure

    config = config or LabelerConfig()
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    backbone = config.backbone()
    sets: dict[str, Any] = {}
    shown: list[tuple[FeatureSet, dict[str, np.ndarray]]] = []
    for benchmark in benchmarks:
        features = extract_feature_set(benchmark, backbone, limit=limit)
        sets[features.name] = _evaluate_set(features, config, variants)
        if figure_path is not None and figure_images > 0:
            subset = min(figure_images, len(features))
            grid_maps = {
                name: run_variant(name, features.feats[:subset], features.cams[:subset],
                                  config.potnet).soft
                for name in variants
            }
            shown.append((features, grid_maps))
    result = {"config": _config_json(config), "sets": sets}
    if figure_path is not None and shown:
        result["figure"] = str(write_overlay_figure(shown, figure_path, images=figure_images))
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _config_json(config: LabelerConfig) -> dict[str, Any]:
    import dataclasses

    values = dataclasses.asdict(config)
    values["stages"] = list(config.stages)
    return values


def markdown_quality_table(result: dict[str, Any]) -> str:
    """The ablation as a Markdown table: one row per set and variant."""
    header = (
        "| set | variant | max F | mean F | MAE | S | IoU | IoU conf. half / other | by spread |"
    )
    lines = [header, "|" + "---|" * 9]
    for set_name, table in result["sets"].items():
        for variant, row in table.items():
            cells = " | ".join(f"{row[key]:.3f}" for key in TABLE_METRICS)
            halves = f"{row['confident_iou']:.3f} / {row['other_iou']:.3f} | "
            halves += f"{row['spread_confident_iou']:.3f} / {row['spread_other_iou']:.3f}"
            lines.append(f"| {set_name} | {variant} | {cells} | {halves} |")
    return "\n".join(lines)
