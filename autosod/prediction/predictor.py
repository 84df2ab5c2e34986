"""The prediction job's actor body (torch, no Ray): a trained AutoSOD network loaded once, turning
decoded batches into the columns the labelling actor makes, so that the labelling job's encode
tasks and writer store them unchanged.

`Predictor` is the `actor.GridModel` of a network: the chosen query's soft mask at the pixel
decoder's stride (flip-averaged when the run validated so), upsampled to each original size by
the same `maps.full_size` labelling uses (bilinear, as `AutoSodNet.predict`), and two scores:
- `objectness`: sigmoid of the chosen query's objectness logit (0.5 for the FPN decoder);
- `mask_quality`: `potnet.mask_quality` of the mask on the backbone's last feature grid (feature
  separation of mask and background times the share of the frame outside it), the score
  labelling stores for pseudo-masks, so that `train --min-quality` and quality weighting work
  on predicted stores as on labelled ones.
`PredictStage` is `actor.MapStage` around it (failed batches split, actor-killing images bounded).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as nnf

from autosod.labeling.actor import Attempts, MapStage, set_threads
from autosod.labeling.labeler import CPU_CHUNK_IMAGES, FullMaps, GridLabels, full_maps
from autosod.labeling.resources import MAP_BUDGET_BYTES
from autosod.models.outputs import Inference
from autosod.potnet.mask_quality import mask_quality
from autosod.training.runs import load_run_network

__all__ = ["PredictStage", "Predictor", "grid_mask_quality", "resolve_device"]

logger = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when this process sees a GPU, else "cpu"; others unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def grid_mask_quality(probs: torch.Tensor, memory: torch.Tensor, *,
                      threshold: float) -> np.ndarray:
    """probs (B, h, w) in [0, 1], memory (B, C, h', w') -> `potnet.mask_quality` (B,) float32 of
    the mask (mean of probs over each memory cell >= threshold) on the memory's grid."""
    grid = (int(memory.shape[-2]), int(memory.shape[-1]))
    cells = nnf.adaptive_avg_pool2d(probs[:, None].float(), grid)[:, 0]
    mask = (cells >= threshold).flatten(1).cpu().numpy()
    feats = memory.float().flatten(2).transpose(1, 2).cpu().numpy()  # (B, N, C)
    return np.asarray(mask_quality(feats, mask, grid), dtype=np.float32)


class Predictor:
    """A trained network loaded once from a checkpoint (file URI, local or s3://)."""

    def __init__(self, checkpoint: str, *, size_px: int, flip_average: bool,
                 mask_threshold: float, device: str = "auto", precision: str = "fp32",
                 storage_options: dict[str, Any] | None = None,
                 cpu_chunk: int = CPU_CHUNK_IMAGES) -> None:
        self.device = resolve_device(device)
        self.cpu_chunk = max(1, cpu_chunk)
        if precision == "bf16" and torch.device(self.device).type != "cuda":
            raise ValueError(f"precision 'bf16' needs a CUDA device, but the network runs on "
                             f"{self.device}; predict in fp32 (--no-bf16) or on a GPU")
        self.net = load_run_network(checkpoint, device=self.device,
                                    storage_options=storage_options)
        self.size_px, self.flip_average = size_px, flip_average
        self.threshold, self.precision = mask_threshold, precision
        self._side = size_px // self.net.config.output_stride

    def grid_cells(self) -> int:
        """N = h·w of the probability grid (the pixel decoder's stride)."""
        return self._side * self._side

    def _infer(self, images: np.ndarray) -> Inference:
        """The network's inference; on a CPU `cpu_chunk` images at a time (as the labeller's
        backbone: per-image results equal to float32 rounding, activations small enough for
        the allocator to reuse)."""
        if torch.device(self.device).type == "cpu" and len(images) > self.cpu_chunk:
            parts = [self._infer(images[start:start + self.cpu_chunk])
                     for start in range(0, len(images), self.cpu_chunk)]
            return Inference(*(torch.cat(field) for field in zip(*parts, strict=True)))
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.net.infer(images, flip_average=self.flip_average)

    @torch.no_grad()
    def label_grid(self, images: np.ndarray) -> GridLabels:
        """uint8 (B, S, S, 3) -> the chosen query's probabilities (B, h·w) on the device, and
        the objectness and mask-quality scores on the host."""
        result = self._infer(images)
        probs = result.probs.float()
        quality = grid_mask_quality(probs, result.memory, threshold=self.threshold)
        count, height, width = probs.shape
        return GridLabels(soft=probs.reshape(count, -1), grid=(height, width),
                          mean_entropy=None, transport_cost=None, mask_quality=quality,
                          no_signal=[""] * count,
                          objectness=result.objectness.float().cpu().numpy())

    def full_maps(self, labels: GridLabels, sizes: Sequence[tuple[int, int]],
                  rows: Sequence[int] | None = None) -> FullMaps:
        """The `rows` upsampled to their `sizes` on the device; one copy to the host."""
        return full_maps(labels, sizes, rows, threshold=self.threshold)


class PredictStage(MapStage):
    """The prediction job's actor body: `MapStage` around a `Predictor`."""

    def __init__(self, checkpoint: str, config_hash: str, *, size_px: int, flip_average: bool,
                 mask_threshold: float, device: str = "auto", precision: str = "fp32",
                 threads: int | None = None, map_budget_bytes: int = MAP_BUDGET_BYTES,
                 attempts: Attempts | None = None,
                 storage_options: dict[str, Any] | None = None) -> None:
        if threads:
            set_threads(threads)
        model = Predictor(checkpoint, size_px=size_px, flip_average=flip_average,
                          mask_threshold=mask_threshold, device=device, precision=precision,
                          storage_options=storage_options)
        super().__init__(model, config_hash, precision=precision,
                         map_budget_bytes=map_budget_bytes, attempts=attempts,
                         kind="prediction")
