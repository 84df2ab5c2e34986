"""Ground-truth figures during training, for reporting only (`--val-gt DIR`, a benchmark folder).

Each worker loads its share of the folder's images once (every `world_size`-th stem, from its
rank), squeezed to the prediction size, and its masks at their own size. Each epoch it predicts
the soft masks the way prediction will (`AutoSodNet.predict`, flip averaging, upsampled to the
mask size) and returns the sums of IoU (at 0.5), max F and MAE accumulators; the job adds the
workers' sums before `gt_metrics`. The best checkpoint is never chosen on these figures.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from autosod.evaluation.fmeasure import FmeasureAccumulator
from autosod.evaluation.pairing import gt_folder, list_by_stem, match_stems, read_gray
from autosod.evaluation.pixelwise import IouAccumulator, MaeAccumulator
from autosod.io.decode import read_image, resize_to_input
from autosod.models.autosod_net import AutoSodNet

__all__ = ["GroundTruthSet", "benchmark_name", "gt_metrics", "gt_state", "load_ground_truth"]

logger = logging.getLogger(__name__)


def benchmark_name(benchmark: str) -> str:
    """A benchmark folder's name in the run's figures: its last path component."""
    return posixpath.basename(benchmark.rstrip("/"))


@dataclass
class GroundTruthSet:
    """One worker's share of a benchmark folder, ready to predict."""

    name: str
    images: np.ndarray  # (N, S, S, 3) uint8 at the prediction size
    masks: list[np.ndarray] = field(default_factory=list)  # (H, W) uint8 at their own size
    skipped: dict[str, str] = field(default_factory=dict)  # stem -> why it was left out
    total: int = 0  # pairs in the whole folder (all workers)


def load_ground_truth(
    benchmark: str,
    *,
    size_px: int,
    rank: int = 0,
    world_size: int = 1,
    max_pixels: int,
    storage_options: dict[str, Any] | None = None,
) -> GroundTruthSet:
    """This worker's share of `benchmark` (images/ + masks/ or gt/, matched by stem)."""
    pairing = match_stems(
        list_by_stem(posixpath.join(benchmark.rstrip("/"), "images"), storage_options),
        list_by_stem(gt_folder(benchmark, storage_options), storage_options),
    )
    if not pairing.pairs:
        raise ValueError(f"benchmark folder {benchmark!r} has no image with a mask of the same "
                         "stem; lay it out as images/ and masks/ side by side")
    images, masks, skipped = [], [], {}
    for pair in pairing.pairs[rank::world_size]:
        result = read_image(pair.pred_uri, max_pixels=max_pixels, min_size_px=size_px,
                            storage_options=storage_options)
        if not result.ok:
            skipped[pair.stem] = f"{result.status}: {result.error[:200]}"
            continue
        images.append(resize_to_input(result.rgb, size_px))
        masks.append(read_gray(pair.gt_uri, storage_options))
    if skipped:
        logger.warning("%s: %d images left out, e.g. %s", benchmark, len(skipped),
                       next(iter(skipped.items())))
    stack = np.stack(images) if images else np.zeros((0, size_px, size_px, 3), np.uint8)
    return GroundTruthSet(name=benchmark_name(benchmark), images=stack, masks=masks,
                          skipped=skipped, total=len(pairing.pairs))


def _accumulators() -> dict[str, Any]:
    return {"fmeasure": FmeasureAccumulator(), "iou": IouAccumulator(), "mae": MaeAccumulator()}


@torch.no_grad()
def gt_state(
    net: AutoSodNet, gt_set: GroundTruthSet, *, flip_average: bool, batch_size: int = 8
) -> dict[str, np.ndarray]:
    """Predict this worker's share and return the accumulators' state sums (mergeable)."""
    was_training = net.training
    net.eval()
    accs = _accumulators()
    for start in range(0, len(gt_set.images), batch_size):
        masks = gt_set.masks[start : start + batch_size]
        preds = net.predict(gt_set.images[start : start + batch_size],
                            [m.shape for m in masks], flip_average=flip_average)
        for pred, mask in zip(preds, masks, strict=True):
            for acc in accs.values():
                acc.update(pred, mask)
    net.train(was_training)
    return {f"{name}.{k}": v for name, acc in accs.items() for k, v in acc.state().items()}


def gt_metrics(state: dict[str, np.ndarray]) -> dict[str, float]:
    """`images`, `iou`, `max_f` and `mae` of a (summed) state."""
    out: dict[str, float] = {}
    for name, acc in _accumulators().items():
        prefix = f"{name}."
        acc.load_state({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        if acc.count == 0:
            return {"images": 0}
        out["images"] = acc.count
        out.update({k: v for k, v in acc.compute().items() if k in ("iou", "max_f", "mae")})
    return out
