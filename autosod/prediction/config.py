"""`PredictJobConfig`: every setting of the prediction job in one frozen dataclass (no torch, no
Ray here).

Prediction runs a trained AutoSOD network over a source into a mask store, with the labelling
job's pipeline (manifest, resume, decode tasks, actor pool, encode tasks, writer): the job fields
are `LabelJobConfig`'s, with the same names and defaults. The CLI and `jobs/predict.py` pass their
options (None = not given) to `build_predict_config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from autosod.io.decode import DEFAULT_MAX_PIXELS
from autosod.io.filesystem import storage_options_for
from autosod.io.manifest import DEFAULT_SHARD_SIZE
from autosod.io.store.mask_store import MODES
from autosod.labeling.config import ACTOR_RESOURCES, DEFAULT_PART_ROWS, redact

__all__ = ["DEVICES", "PredictJobConfig", "build_predict_config"]

DEVICES = ("auto", "cpu", "cuda")  # "cuda:N" too; auto: cuda when the actor sees one


@dataclass(frozen=True, kw_only=True)
class PredictJobConfig:
    """Settings of one prediction run (checkpoint + source -> actors -> store)."""

    checkpoint: str  # a run directory (its best checkpoint) or a checkpoint file (.pt)
    source: str  # folder, glob, s3://bucket/prefix, URI list or manifest.parquet
    store: str  # local folder or s3:// prefix of the Parquet mask store
    size_px: int | None = None  # square network input; None: the run's predict_size_px
    flip_average: bool | None = None  # mean with the flipped image; None: as the run validated
    mask_threshold: float = 0.5  # binary mask = soft map >= this
    device: str = "auto"  # torch device inside each actor: auto | cpu | cuda | cuda:N
    bf16: bool = True  # bfloat16 autocast of the network when an actor runs on a real GPU
    batch_size: int = 16  # images per actor call (and per decode task)
    num_actors: int | None = None  # actors; None: one per GPU, or the CPU plan's
    actor_cpus: float | None = None  # CPUs reserved (and threads) per actor; None: the plan's
    actor_resources: str = "auto"  # "auto" | "gpu" | "cpu"
    limit: int | None = None  # predict at most this many manifest rows (first in order)
    address: str | None = None  # Ray address; None: join the job's cluster or start local Ray
    storage_options: dict[str, Any] = field(default_factory=dict)  # fsspec/s3fs options
    mode: str = "resume"  # "resume": skip committed ids; "overwrite": clear the store first
    retry_failed: bool = True  # resume also retries ids whose last try was read/model_error
    shard_size: int = DEFAULT_SHARD_SIZE  # manifest rows per shard
    part_rows: int = DEFAULT_PART_ROWS  # rows per store part (one writer call, one commit)
    max_pixels: int = DEFAULT_MAX_PIXELS  # decoded images above this are `too_many_pixels`
    progress: bool = True  # Ray Data progress bars

    def __post_init__(self) -> None:
        for name in ("checkpoint", "source", "store"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty path or s3:// URI, got {value!r}")
        for name in ("batch_size", "shard_size", "part_rows", "max_pixels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("num_actors", "limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if self.size_px is not None and (not isinstance(self.size_px, int)
                                         or self.size_px < 64 or self.size_px % 32):
            raise ValueError(f"size_px must be a multiple of 32 and >= 64 (or None: the run's "
                             f"prediction size), got {self.size_px!r}")
        if self.actor_cpus is not None and (
            isinstance(self.actor_cpus, bool) or not isinstance(self.actor_cpus, (int, float))
            or not self.actor_cpus > 0
        ):
            raise ValueError(f"actor_cpus must be None or a number > 0, got {self.actor_cpus!r}")
        if not isinstance(self.mask_threshold, (int, float)) or not 0 < self.mask_threshold < 1:
            raise ValueError(f"mask_threshold must be in (0, 1), got {self.mask_threshold!r}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be one of {', '.join(DEVICES)} or cuda:N, "
                             f"got {self.device!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.actor_resources not in ACTOR_RESOURCES:
            raise ValueError(f"actor_resources must be one of {', '.join(ACTOR_RESOURCES)}, "
                             f"got {self.actor_resources!r}")
        for name in ("bf16", "retry_failed"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.flip_average is not None and not isinstance(self.flip_average, bool):
            raise ValueError(f"flip_average must be None, True or False, "
                             f"got {self.flip_average!r}")

    @property
    def input_size(self) -> int:
        """The actors' square input size (set from the run by the driver when None)."""
        if self.size_px is None:
            raise ValueError("size_px is not resolved yet; the driver sets it from the run")
        return self.size_px

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for the run summary); credentials in storage options are hidden."""
        out = dataclasses.asdict(self)
        out["storage_options"] = redact(self.storage_options)
        return out


def build_predict_config(*, checkpoint: str, source: str, store: str,
                         endpoint_url: str | None = None, **options: Any) -> PredictJobConfig:
    """Merge the options that were given (not None) into the defaults; unknown names raise
    TypeError listing the valid ones."""
    valid = {f.name for f in dataclasses.fields(PredictJobConfig)} - {"checkpoint", "source",
                                                                      "store"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise TypeError(f"unknown prediction options {unknown}; valid: {sorted(valid)}")
    given = {name: value for name, value in options.items() if value is not None}
    if endpoint_url:
        given["storage_options"] = storage_options_for(endpoint_url)
    return PredictJobConfig(checkpoint=checkpoint, source=source, store=store, **given)
