"""The actor body of the labelling job (no Ray here): model and head work only. Prediction's
actor is the same `MapStage` around a trained network (`autosod.prediction.predictor`).

`LabelStage` takes a decoded batch ((B, S, S, 3) images), runs the backbone and the head on its
device, upsamples the soft maps to the original sizes there (within a byte budget per batch;
images beyond it leave at the grid and the encode task upsamples them on the CPU) and copies the
uint8 maps to the host once. PNG encoding happens after it, in CPU tasks
(`stages.encode_batch`).

Failures, bounded:
- a batch that raises (CUDA out of memory, a sick GPU, a bug on one image) is split and labelled
  one image at a time; only an image that fails alone is `model_error`;
- a batch whose actor process died (killed for memory, a crash) is retried by Ray Data on a
  restarted actor. An `Attempts` ledger shared by the actors counts attempts that began and never
  ended: the retry labels one image at a time, and an image that has killed its actor
  `MAX_ACTOR_KILLS` times on its own is marked `model_error` instead of being tried again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any, Protocol

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from autosod.io import status as st
from autosod.labeling.attempts import Attempts, LocalAttempts
from autosod.labeling.config import LabelerConfig
from autosod.labeling.host_memory import keep_freed_memory
from autosod.labeling.labeler import FullMaps, GridLabels, PseudoLabeler
from autosod.labeling.maps import map_bytes
from autosod.labeling.resources import MAP_BUDGET_BYTES

__all__ = [
    "EXIT_ENV",
    "MAX_ACTOR_KILLS",
    "PID_DIR_ENV",
    "SCORES",
    "Attempts",
    "GridModel",
    "LabelStage",
    "LocalAttempts",
    "MapStage",
    "set_threads",
]

logger = logging.getLogger(__name__)

PID_DIR_ENV = "AUTOSOD_ACTOR_PID_DIR"  # tests only: each LabelStage writes its pid file here
EXIT_ENV = "AUTOSOD_TEST_ACTOR_EXIT_ON"  # tests only: exit the process (a crash) on a uri suffix
MAX_ACTOR_KILLS = 2  # an image that killed its actor this often, labelled alone, is marked
SCORES = ("mean_entropy", "transport_cost", "mask_quality", "objectness")  # a model's own
_PASSED = ("image_id", "uri", "shard", "width", "height", "decode_s")
_EMPTY = np.zeros((0, 0), dtype=np.uint8)


def set_threads(threads: int) -> None:
    """Use `threads` torch intra-op and BLAS/OpenMP threads in this process (Ray sets
    OMP_NUM_THREADS from the actor's CPU reservation, which is not what the plan wants)."""
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _batch_key(ids: np.ndarray) -> str:
    return "batch:" + hashlib.sha256("\n".join(sorted(map(str, ids))).encode()).hexdigest()[:20]


class GridModel(Protocol):
    """What an actor body runs: a model loaded once that maps (B, S, S, 3) images to soft maps
    on a grid (`GridLabels`, scores it does not make left None) and upsamples them
    (`labeler.PseudoLabeler`; prediction's `Predictor`)."""

    device: str

    def grid_cells(self) -> int:
        """N = h·w of the grid the soft maps come at."""
        ...

    def label_grid(self, images: np.ndarray) -> GridLabels:
        """uint8 (B, S, S, 3) -> soft maps (B, N) on the model's device and scores."""
        ...

    def full_maps(self, labels: GridLabels, sizes: list[tuple[int, int]],
                  rows: list[int] | None = None) -> FullMaps:
        """The `rows` upsampled to their `sizes` on the model's device, copied to the host."""
        ...


class MapStage:
    """Actor body around a `GridModel`: (B, S, S, 3) images in; uint8 full-size maps (or grid
    soft maps) and scores out. Rows that failed earlier pass through with their status.

    Output columns: the manifest and decode columns, `status`, `error`, `soft_map` (uint8 (H, W)
    or empty), `mask_bits` (packed rows or empty), `soft_grid` (B, N) float32 and `grid` (B, 2)
    for rows without full-size maps, `upsampled` (B,) bool, the scores `SCORES` (NaN where none),
    `config_hash`, `device`, `label_s`.
    """

    def __init__(self, model: GridModel, config_hash: str, *, precision: str = "fp32",
                 map_budget_bytes: int = MAP_BUDGET_BYTES, attempts: Attempts | None = None,
                 kind: str = "POTNet") -> None:
        self._labeler = model
        self._config_hash = config_hash
        self._budget = map_budget_bytes
        self._attempts = attempts if attempts is not None else LocalAttempts()
        self._exit_on = os.environ.get(EXIT_ENV) or None
        self._kind = kind
        self._device = f"{model.device}{' bf16' if precision == 'bf16' else ''}"
        if torch.device(model.device).type == "cpu":
            keep_freed_memory()  # a CPU model's activations: reused, not faulted in each batch
        logger.info("%s actor ready on %s, %d threads (pid %d)", kind, self._device,
                    torch.get_num_threads(), os.getpid())
        pid_dir = os.environ.get(PID_DIR_ENV)
        if pid_dir:
            os.makedirs(pid_dir, exist_ok=True)
            with open(os.path.join(pid_dir, f"{os.getpid()}.pid"), "w") as handle:
                handle.write(str(os.getpid()))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        out = _Output(batch, self._grid_size())
        rows = np.flatnonzero(out.status == st.OK)
        if rows.size:
            key = _batch_key(batch["image_id"][rows])
            if self._attempts.begin(key):
                logger.warning("an earlier attempt at a batch of %d images never finished (its "
                               "actor died); labelling them one at a time", rows.size)
                self._one_by_one(batch, rows, out)
            else:
                self._label(batch, rows, out, split=True)
            self._attempts.end(key)
        columns = out.columns()
        count = len(batch["image_id"])
        columns["config_hash"] = np.full(count, self._config_hash, dtype=object)
        columns["device"] = np.full(count, self._device, dtype=object)
        columns["label_s"] = np.full(count, (time.perf_counter() - start) / max(count, 1))
        return columns

    def _grid_size(self) -> int:
        return self._labeler.grid_cells()

    def _grid(self, batch: dict[str, np.ndarray], rows: np.ndarray) -> GridLabels:
        """Backbone + head for `rows` (test subclasses override this to fail on purpose)."""
        return self._labeler.label_grid(np.ascontiguousarray(batch["image"][rows]))

    def _label(self, batch: dict[str, np.ndarray], rows: np.ndarray, out: _Output, *,
               split: bool) -> None:
        """Label `rows`; on an exception split them (when `split`) or mark them model_error."""
        try:
            if self._exit_on and any(str(batch["uri"][r]).endswith(self._exit_on) for r in rows):
                os._exit(70)  # tests: the process dies mid-batch, as in a crash
            labels = self._grid(batch, rows)
            sizes = [(int(batch["height"][r]), int(batch["width"][r])) for r in rows]
            on_device = self._within_budget(sizes, labels.no_signal)
            maps = self._labeler.full_maps(labels, sizes, on_device)
            out.put(rows, labels, maps)
        except Exception as exc:  # per-batch boundary: retry smaller, then record the reason
            logger.exception("labelling %d image(s) failed", rows.size)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if split and rows.size > 1:
                for row in rows:
                    self._label(batch, np.array([row]), out, split=False)
            else:
                out.fail(rows, st.MODEL_ERROR, f"{type(exc).__name__}: {exc}")

    def _one_by_one(self, batch: dict[str, np.ndarray], rows: np.ndarray, out: _Output) -> None:
        for row in rows:
            key = f"image:{batch['image_id'][row]}"
            kills = self._attempts.begin(key)
            if kills >= MAX_ACTOR_KILLS:
                out.fail(np.array([row]), st.MODEL_ERROR,
                         f"this image alone killed the {self._kind} actor {kills} times")
            else:
                self._label(batch, np.array([row]), out, split=False)
            self._attempts.end(key)

    def _within_budget(self, sizes: list[tuple[int, int]], no_signal: list[str]) -> list[int]:
        """Indices of the images upsampled on the device: in order, while their maps fit in the
        batch's byte budget (the others leave at the grid)."""
        chosen, used = [], 0
        for index, ((height, width), reason) in enumerate(zip(sizes, no_signal, strict=True)):
            need = map_bytes(height, width)
            if not reason and used + need <= self._budget:
                chosen.append(index)
                used += need
        return chosen


class LabelStage(MapStage):
    """The labelling job's actor body: `MapStage` around a `PseudoLabeler` (backbone + POTNet
    head)."""

    def __init__(self, labeler: LabelerConfig, config_hash: str, *, precision: str = "fp32",
                 threads: int | None = None, map_budget_bytes: int = MAP_BUDGET_BYTES,
                 attempts: Attempts | None = None,
                 storage_options: dict[str, Any] | None = None) -> None:
        if threads:
            set_threads(threads)
        model = PseudoLabeler(labeler, storage_options=storage_options, precision=precision)
        super().__init__(model, config_hash, precision=precision,
                         map_budget_bytes=map_budget_bytes, attempts=attempts)


def _empty_maps(count: int) -> np.ndarray:
    maps = np.empty(count, dtype=object)
    for row in range(count):
        maps[row] = _EMPTY
    return maps


class _Output:
    """The actor's output columns for one batch, filled per group of rows."""

    def __init__(self, batch: dict[str, np.ndarray], grid_size: int) -> None:
        count = len(batch["image_id"])
        self.passed = {name: batch[name] for name in _PASSED}
        self.status = np.asarray(batch["status"], dtype=object).copy()
        self.error = np.asarray(batch["error"], dtype=object).copy()
        self.soft_map = _empty_maps(count)
        self.mask_bits = _empty_maps(count)
        self.soft_grid = np.zeros((count, grid_size), dtype=np.float32)
        self.grid = np.zeros((count, 2), dtype=np.int32)
        self.upsampled = np.zeros(count, dtype=bool)
        self.scores = {name: np.full(count, np.nan, dtype=np.float32) for name in SCORES}

    def put(self, rows: np.ndarray, labels: GridLabels, maps: Any) -> None:
        host_soft = labels.soft.float().cpu().numpy()
        for index, row in enumerate(rows):
            reason = labels.no_signal[index]
            if reason:
                self.fail(np.array([row]), st.NO_SIGNAL, reason)
                continue
            self.status[row], self.error[row] = st.OK, ""
            self.soft_grid[row] = host_soft[index]
            self.grid[row] = labels.grid
            for name in SCORES:
                values = getattr(labels, name)
                if values is not None:
                    self.scores[name][row] = values[index]
        for index, soft, bits in zip(maps.rows, maps.softs, maps.mask_bits, strict=True):
            row = rows[index]
            self.soft_map[row], self.mask_bits[row], self.upsampled[row] = soft, bits, True

    def fail(self, rows: np.ndarray, status: str, error: str) -> None:
        self.status[rows], self.error[rows] = status, error[:500]
        for name in SCORES:
            self.scores[name][rows] = np.nan
        for row in rows:
            self.soft_map[row], self.mask_bits[row], self.upsampled[row] = _EMPTY, _EMPTY, False

    def columns(self) -> dict[str, np.ndarray]:
        return {**self.passed, "status": self.status, "error": self.error,
                "soft_map": self.soft_map, "mask_bits": self.mask_bits,
                "soft_grid": self.soft_grid, "grid": self.grid, "upsampled": self.upsampled,
                **self.scores}
