"""`LabelJobConfig`: every setting of the labelling job in one frozen dataclass, validated once.

The CLI and `jobs/label.py` pass their options (None = not given) to `build_label_config`, which
merges them into the defaults with `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from autosod.io.decode import DEFAULT_MAX_PIXELS
from autosod.io.filesystem import storage_options_for
from autosod.io.manifest import DEFAULT_SHARD_SIZE
from autosod.io.store.mask_store import MODES
from autosod.models.config import SOURCE_OWN_FIELDS, BackboneConfig
from autosod.potnet.config import PotnetConfig

__all__ = [
    "ACTOR_RESOURCES",
    "DEFAULT_PART_ROWS",
    "JobSettings",
    "LabelJobConfig",
    "LabelerConfig",
    "build_label_config",
    "labeler_record",
    "parse_channels",
    "parse_stages",
    "redact",
]


ACTOR_RESOURCES = ("auto", "gpu", "cpu")  # auto: GPU actors when the cluster has GPUs
DEFAULT_PART_ROWS = 2000  # rows per store part: 10 M images make 5,000 part files


@dataclass(frozen=True, kw_only=True)
class LabelerConfig:
    """Backbone options (see `BackboneConfig`, whose defaults they share, except the device), the
    input size and the POTNet head's config."""

    model_name: str = BackboneConfig.model_name  # timm architecture
    weights: str | None = BackboneConfig.weights  # package:NAME | path | s3://... | hub; None:
    # the packaged weights of model_name (filled in)
    mean: tuple[float, float, float] | None = BackboneConfig.mean  # None: the source's own
    std: tuple[float, float, float] | None = BackboneConfig.std
    weights_mapping: str | None = BackboneConfig.weights_mapping  # by-name | in-order | None
    cam: str = BackboneConfig.cam  # classifier | attention | pca
    top_classes: int = BackboneConfig.top_classes  # C of the classifier CAM
    stages: tuple[int, ...] = BackboneConfig.stages  # CNN stages on the stride grid
    stride_px: int = BackboneConfig.stride_px  # CNN feature grid stride (ViTs: patch size)
    input_size: int = BackboneConfig.input_size  # square network input (pixels)
    device: str = "auto"  # cpu | cuda | cuda:N | auto
    potnet: PotnetConfig = field(default_factory=PotnetConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.potnet, PotnetConfig):
            raise TypeError(f"potnet must be a PotnetConfig, got {type(self.potnet).__name__}")
        object.__setattr__(self, "stages", tuple(int(s) for s in self.stages))
        backbone = self.backbone()  # validates the backbone fields and fills in the weights
        for name in ("weights", *SOURCE_OWN_FIELDS):
            object.__setattr__(self, name, getattr(backbone, name))

    def backbone(self, storage_options: Mapping | None = None) -> BackboneConfig:
        """The `BackboneConfig` these options describe."""
        names = {f.name for f in dataclasses.fields(BackboneConfig)} - {"storage_options"}
        values = {name: getattr(self, name) for name in names}
        return BackboneConfig(**values, storage_options=storage_options)


class JobSettings(Protocol):
    """The job fields the store pipeline (prepare, actor plan, stages, writer) reads: those of
    `LabelJobConfig`, which prediction's `PredictJobConfig` shares."""

    source: str
    store: str
    bf16: bool
    batch_size: int
    num_actors: int | None
    actor_cpus: float | None
    actor_resources: str
    limit: int | None
    address: str | None
    storage_options: dict[str, Any]
    mode: str
    retry_failed: bool
    shard_size: int
    part_rows: int
    max_pixels: int
    progress: bool

    @property
    def input_size(self) -> int:
        """The actors' square input size (pixels)."""
        ...

    @property
    def device(self) -> str:
        """The torch device asked of the actors (cpu | cuda | cuda:N | auto)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict for the run summary."""
        ...


@dataclass(frozen=True, kw_only=True)
class LabelJobConfig:
    """Settings of one labelling run (source -> POTNet actors -> store)."""

    source: str  # folder, glob, s3://bucket/prefix, URI list or manifest.parquet
    store: str  # local folder or s3:// prefix of the Parquet mask store
    labeler: LabelerConfig = field(default_factory=LabelerConfig)  # backbone + head, per actor
    bf16: bool = True  # bfloat16 autocast of the backbone when an actor runs on CUDA
    batch_size: int = 16  # images per actor call (and per decode task)
    num_actors: int | None = None  # POTNet actors; None: one per GPU, or the CPU plan's
    actor_cpus: float | None = None  # CPUs reserved (and threads) per actor; None: the plan's
    actor_resources: str = "auto"  # "auto" | "gpu" (num_gpus=1 per actor) | "cpu"
    limit: int | None = None  # label at most this many manifest rows (first in manifest order)
    address: str | None = None  # Ray address; None: join the job's cluster or start local Ray
    storage_options: dict[str, Any] = field(default_factory=dict)  # fsspec/s3fs options
    mode: str = "resume"  # "resume": skip committed ids; "overwrite": clear the store first
    retry_failed: bool = True  # resume also relabels ids whose last try was read/model_error
    shard_size: int = DEFAULT_SHARD_SIZE  # manifest rows per shard (the folder of its parts)
    part_rows: int = DEFAULT_PART_ROWS  # rows per store part (one writer call, one commit)
    max_pixels: int = DEFAULT_MAX_PIXELS  # decoded images above this are `too_many_pixels`
    progress: bool = True  # Ray Data progress bars

    def __post_init__(self) -> None:
        for name in ("source", "store"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty path or s3:// URI, got {value!r}")
        for name in ("batch_size", "shard_size", "part_rows", "max_pixels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("num_actors", "limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if self.actor_cpus is not None and (
            isinstance(self.actor_cpus, bool) or not isinstance(self.actor_cpus, (int, float))
            or not self.actor_cpus > 0
        ):
            raise ValueError(f"actor_cpus must be None or a number > 0, got {self.actor_cpus!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.actor_resources not in ACTOR_RESOURCES:
            raise ValueError(
                f"actor_resources must be one of {', '.join(ACTOR_RESOURCES)}, "
                f"got {self.actor_resources!r}"
            )
        for name in ("bf16", "retry_failed"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.labeler, LabelerConfig):
            raise TypeError(f"labeler must be a LabelerConfig, got {type(self.labeler).__name__}")

    @property
    def input_size(self) -> int:
        """The actors' square input size (the labeller's)."""
        return self.labeler.input_size

    @property
    def device(self) -> str:
        """The labeller's device."""
        return self.labeler.device

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for the run summary); credentials in storage options are hidden."""
        out = dataclasses.asdict(self)
        out["storage_options"] = redact(self.storage_options)
        return out


def labeler_record(labeler: LabelerConfig) -> dict[str, Any]:
    """`asdict(labeler)` without the source-own fields (mean, std, weights_mapping) left None.

    What the store records and hashes: a setting made before these fields existed hashes as it
    did then (stores resume, docs/quality.md's figures stay valid), and one that sets them
    records them.
    """
    record = dataclasses.asdict(labeler)
    for name in SOURCE_OWN_FIELDS:
        if record[name] is None:
            del record[name]
    return record


def redact(options: dict[str, Any]) -> dict[str, Any]:
    secret_words = ("secret", "token", "password", "key")
    out: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, dict):
            out[name] = redact(value)
        elif any(word in name.lower() for word in secret_words):
            out[name] = "***"
        else:
            out[name] = value
    return out


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def parse_stages(text: str) -> tuple[int, ...]:
    """`"1,2,3,4"` -> (1, 2, 3, 4): the CNN feature stages given on a command line."""
    try:
        stages = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise ValueError(
            f"stages must be comma-separated integers such as 1,2,3,4, got {text!r}"
        ) from exc
    return stages


def parse_channels(text: str) -> tuple[float, float, float]:
    """`"0.5"` -> (0.5, 0.5, 0.5); `"0.485,0.456,0.406"` -> those: a mean or std given on a
    command line."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise ValueError(
            f"mean and std must be one number or three comma-separated ones (R,G,B) such as "
            f"0.5 or 0.485,0.456,0.406, got {text!r}"
        ) from exc
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"mean and std take one number or three (R,G,B), got {text!r}")
    return values  # type: ignore[return-value]


def build_label_config(
    *,
    source: str,
    store: str,
    labeler: dict[str, Any] | None = None,
    potnet: dict[str, Any] | None = None,
    endpoint_url: str | None = None,
    **job: Any,
) -> LabelJobConfig:
    """Merge options that were given (not None) into the defaults.

    `labeler`: `LabelerConfig` fields; `potnet`: `PotnetConfig` fields; `job`: the other
    `LabelJobConfig` fields. Unknown names raise TypeError listing the valid ones.
    """
    job_fields = {f.name for f in dataclasses.fields(LabelJobConfig)} - {"source", "store",
                                                                          "labeler"}
    unknown = sorted(set(job) - job_fields)
    if unknown:
        raise TypeError(f"unknown job options {unknown}; valid: {sorted(job_fields)}")
    head = dataclasses.replace(PotnetConfig(), **_given(potnet or {}))
    # built afresh, not replaced: weights left unset follow the model name given
    labeler_config = LabelerConfig(**_given(labeler or {}), potnet=head)
    options = _given(job)
    if endpoint_url:
        options["storage_options"] = storage_options_for(endpoint_url)
    return LabelJobConfig(source=source, store=store, labeler=labeler_config, **options)

