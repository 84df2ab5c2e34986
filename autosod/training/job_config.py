"""Settings of one training run on Ray Train (`TrainJobConfig`), and how CLI options build it.

Imports neither torch nor ray. `TrainConfig` (autosod.training.config) holds the network, the
optimiser and the data options that change what is learnt; `TrainJobConfig` adds where the data
and the run live and how the work is spread over the cluster.
"""

from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass, field
from typing import Any

from autosod.io.decode import DEFAULT_MAX_PIXELS
from autosod.io.filesystem import storage_options_for
from autosod.training.config import TrainConfig, preset

__all__ = ["BEST_METRIC", "TrainJobConfig", "build_train_config", "parse_indices"]

# The metric that chooses the "best" checkpoint: IoU against the pseudo-masks of the validation
# split (never ground truth; `--val-gt` folders are reported only).
BEST_METRIC = "val_iou"


def _positive(name: str, value: float | None) -> None:
    if value is not None and (isinstance(value, bool) or not value > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class TrainJobConfig:
    """One training run: stores in, a run directory out, workers and data tasks in between."""

    stores: tuple[str, ...]  # mask stores (local folders or s3:// prefixes)
    run: str  # run directory DIR or s3://bucket/prefix/NAME; its last component is the name
    train: TrainConfig = field(default_factory=TrainConfig)
    workers: int = 1  # Ray Train workers (one per GPU with `gpus`)
    gpus: bool = False  # one GPU per worker, NCCL; otherwise CPU workers with gloo
    cpus_per_worker: float | None = None  # None: 1 on GPUs; on CPUs min(1, (CPUs - 0.5) / workers)
    data_cpus: float = 0.25  # CPU reservation of each augmentation task during training
    threads: int | None = None  # torch threads per worker; None: the node's CPUs / its workers
    val_fraction: float = 0.05  # share of image ids held out (by id hash) to validate on
    val_gt: tuple[str, ...] = ()  # benchmark folders (images/ + masks/) evaluated each epoch
    cache_side_px: int | None = None  # longer side of the decoded images kept for the run
    keep: int = 2  # checkpoints kept: the best `keep` by val_iou, plus the latest
    max_failures: int = 1  # worker-group restarts from the last checkpoint (-1: no limit)
    bf16: bool | None = None  # bfloat16 autocast; None: on with `gpus`
    address: str | None = None  # Ray cluster to join (default: the job's, or a local one)
    storage_options: dict[str, Any] | None = None  # fsspec options for s3:// stores and runs
    max_pixels: int = DEFAULT_MAX_PIXELS
    progress: bool = False  # Ray Data progress bars (noisy in logs)
    init_from: str | None = None  # a run or checkpoint whose weights a new run starts from

    def __post_init__(self) -> None:
        if self.init_from is not None and (not isinstance(self.init_from, str)
                                           or not self.init_from.strip()):
            raise ValueError(f"init_from must be None or a run directory or checkpoint file, "
                             f"got {self.init_from!r}")
        if not self.stores or not all(isinstance(s, str) and s for s in self.stores):
            raise ValueError(f"give at least one store, got {self.stores!r}")
        object.__setattr__(self, "stores", tuple(self.stores))
        object.__setattr__(self, "val_gt", tuple(self.val_gt))
        if not isinstance(self.run, str) or not posixpath.basename(self.run.rstrip("/")):
            raise ValueError(f"run must be a folder or s3:// prefix with a name, got {self.run!r}")
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r} (Ray "
                             "Train's local mode, 0 workers, writes no checkpoints)")
        if self.train.batch_size % self.workers:
            raise ValueError(f"batch_size ({self.train.batch_size}) must be divisible by "
                             f"workers ({self.workers}): it is the global batch of each step")
        _positive("cpus_per_worker", self.cpus_per_worker)
        _positive("data_cpus", self.data_cpus)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")
        if not 0 < self.val_fraction <= 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5], got {self.val_fraction!r}")
        if self.cache_side_px is not None and self.cache_side_px < self.train.model.input_size_px:
            raise ValueError(f"cache_side_px ({self.cache_side_px}) must be >= the input size "
                             f"({self.train.model.input_size_px})")
        if not isinstance(self.keep, int) or self.keep < 2:
            raise ValueError(f"keep must be an integer >= 2 (the best checkpoint must survive "
                             f"while the next one is written), got {self.keep!r}")
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError(f"max_failures must be an integer >= -1, got {self.max_failures!r}")

    @property
    def name(self) -> str:
        """The run's name: the last component of `run` (what makes a rerun resume)."""
        return posixpath.basename(self.run.rstrip("/"))

    @property
    def use_bf16(self) -> bool:
        return self.gpus if self.bf16 is None else self.bf16

    @property
    def cache_side(self) -> int:
        """Longer side of the cached images: 7/4 of the input size (crops keep detail), in 32s."""
        if self.cache_side_px is not None:
            return self.cache_side_px
        return -(-self.train.model.input_size_px * 7 // 4 // 32) * 32

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict for the run summary (storage options left out: they may hold keys)."""
        out = dataclasses.asdict(self)
        out["storage_options"] = {"endpoint_url": _endpoint(self.storage_options)}
        return out


def _endpoint(options: dict[str, Any] | None) -> str | None:
    options = options or {}
    return options.get("endpoint_url") or options.get("client_kwargs", {}).get("endpoint_url")


def parse_indices(text: str) -> tuple[int, ...]:
    """'1,2,3,4' -> (1, 2, 3, 4); a one-line error names the bad text."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise ValueError(f"feature indices must be comma-separated integers, got {text!r}") from err


def _given(values: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (values or {}).items() if v is not None}


def build_train_config(
    *,
    stores: list[str] | tuple[str, ...],
    run: str,
    preset_name: str = "small",
    model: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    endpoint_url: str | None = None,
    **job: Any,
) -> TrainJobConfig:
    """The preset with the given options (None means "not given") as a `TrainJobConfig`."""
    base = preset(preset_name)
    model_config = dataclasses.replace(base.model, **_given(model))
    train_config = dataclasses.replace(base, model=model_config, **_given(train))
    options = storage_options_for(endpoint_url) or None
    return TrainJobConfig(stores=tuple(stores), run=run, train=train_config,
                          storage_options=options, **_given(job))
