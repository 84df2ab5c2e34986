"""Pseudo-mask quality on a benchmark folder (`images/` + `masks/`), single process, no Ray.

Behind `python jobs/benchmark.py pseudo-iou FOLDER`: labels every image with `PseudoLabeler` and
scores, in the same run, the POTNet masks and the floor every variant must beat (the CAM alone:
max over classes of each CAM divided by its spatial maximum, upsampled bilinearly, > 0.5).
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import time
from typing import Any

import numpy as np
import torch

from autosod.evaluation.metrics import SodMetrics
from autosod.evaluation.pairing import gt_folder, list_by_stem, match_stems, read_gray
from autosod.evaluation.pixelwise import IouAccumulator
from autosod.io.decode import DEFAULT_MAX_PIXELS, read_image, resize_to_input
from autosod.labeling.config import LabelerConfig
from autosod.labeling.labeler import PseudoLabeler, upsample_grid
from autosod.potnet import PotnetConfig

__all__ = ["cam_floor_maps", "pseudo_mask_quality", "run_pseudo_quality"]

logger = logging.getLogger(__name__)


def cam_floor_maps(cams: torch.Tensor, grid: tuple[int, int], sizes: list) -> list[np.ndarray]:
    """cams (B, C, N) -> per image (H, W) float32: max_c S_c / max S_c, bilinear to (H, W)."""
    peak = cams.amax(dim=2, keepdim=True).clamp_min(1e-12)
    floor = (cams / peak).amax(dim=1)  # (B, N)
    return [upsample_grid(floor[i], grid, size).cpu().numpy() for i, size in enumerate(sizes)]


def _load(uris: list[str], size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    rgbs = []
    for uri in uris:
        result = read_image(uri, max_pixels=DEFAULT_MAX_PIXELS)
        if not result.ok:
            raise ValueError(f"cannot read benchmark image {uri!r}: {result.error}")
        rgbs.append(result.rgb)
    return np.stack([resize_to_input(rgb, size) for rgb in rgbs]), [r.shape[:2] for r in rgbs]


def pseudo_mask_quality(
    benchmark: str,
    config: LabelerConfig | None = None,
    *,
    limit: int | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Label `benchmark/images` and score against `benchmark/masks` (binarised at 128).

    Returns count, iou (POTNet binary masks), cam_iou (CAM floor), max_f and mae (soft maps,
    the metrics JSON convention), seconds and images per second.
    """
    config = config or LabelerConfig()
    images = list_by_stem(posixpath.join(benchmark.rstrip("/"), "images"))
    pairing = match_stems(images, list_by_stem(gt_folder(benchmark)))
    pairs = pairing.pairs[:limit] if limit else pairing.pairs
    if not pairs:
        raise ValueError(f"no image/mask pairs in {benchmark!r}; expected images/ and masks/")
    labeler = PseudoLabeler(config)
    soft_metrics, iou, cam_iou = SodMetrics(), IouAccumulator(), IouAccumulator()
    start = time.perf_counter()
    for first in range(0, len(pairs), batch_size):
        chunk = pairs[first : first + batch_size]
        batch, sizes = _load([p.pred_uri for p in chunk], config.input_size)
        features = labeler.extractor(batch)
        result = labeler.label_features(features, sizes)
        floors = cam_floor_maps(features.cams, features.grid, sizes)
        for index, pair in enumerate(chunk):
            gt = read_gray(pair.gt_uri) >= 128
            soft_metrics.update(result.softs[index], gt)
            iou.update(result.masks[index].astype(np.uint8) * 255, gt)
            cam_iou.update(floors[index], gt)
        logger.info("pseudo-mask quality: %d / %d images", first + len(chunk), len(pairs))
    seconds = time.perf_counter() - start
    scores = soft_metrics.compute()
    return {
        "benchmark": benchmark,
        "count": len(pairs),
        "iou": iou.compute()["iou"],
        "cam_iou": cam_iou.compute()["iou"],
        "max_f": scores["max_f"],
        "mae": scores["mae"],
        "seconds": seconds,
        "images_per_s": len(pairs) / seconds,
    }


def run_pseudo_quality(
    benchmarks: list[str],
    *,
    limit: int | None = None,
    batch_size: int = 16,
    labeler: dict[str, Any] | None = None,
    potnet: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`pseudo_mask_quality` for each folder; options that are None keep their defaults."""
    head = dataclasses.replace(
        PotnetConfig(), **{k: v for k, v in (potnet or {}).items() if v is not None}
    )
    given = {k: v for k, v in (labeler or {}).items() if v is not None}
    config = LabelerConfig(potnet=head, **given)
    rows = []
    for benchmark in benchmarks:
        row = pseudo_mask_quality(benchmark, config, limit=limit, batch_size=batch_size)
        rows.append({**row, "config": dataclasses.asdict(config)})
    return rows
