"""The labelling job on Ray Data: manifest -> decode tasks -> POTNet actor pool -> store writer.

Only this module imports Ray; the stage bodies are plain callables in `autosod.labeling.stages`
and the math lives in `autosod.potnet` / `autosod.labeling.labeler`. The driver lists the source
once (saved as the store's manifest), skips ids already done (resume = rerun the same command;
`prepare.py` does all of that without Ray), streams the rest through the pipeline from todo
files in the store's scratch folder, and collects only per-batch counts.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ray
from ray.data import ActorPoolStrategy, DataContext

from autosod.io.store.mask_store import MaskStore
from autosod.labeling.config import LabelJobConfig
from autosod.labeling.prepare import TODO_COLUMNS, PreflightError, Todo, final_log, prepare_run
from autosod.labeling.stages import LabelStage, decode_batch, write_batch
from autosod.labeling.summary import RunCounts, format_summary, versions
from autosod.ray_connection import ray_session

__all__ = ["ActorPlan", "PreflightError", "format_summary", "run_label_job", "store_config",
           "todo_dataset"]

logger = logging.getLogger(__name__)

_ACTOR_MEMORY_BYTES = 1 << 30


@dataclass(frozen=True)
class ActorPlan:
    """How the POTNet actor pool is scheduled, and how Ray was reached."""

    how: str  # "joined ..." or "started single-node Ray ..."
    actor_resources: str  # "gpu" or "cpu" (resolved from "auto")
    num_actors: int
    num_gpus: float  # per actor
    num_cpus: float  # per actor
    cluster: dict[str, float]


def store_config(config: LabelJobConfig) -> dict[str, Any]:
    """What the store records and hashes: everything that changes the masks (the labeler)."""
    return {"labeler": dataclasses.asdict(config.labeler)}


def _local_gpus(config: LabelJobConfig) -> int | None:
    """Logical GPUs for a single-node Ray started here when GPU actors are asked for."""
    return (config.num_actors or 1) if config.actor_resources == "gpu" else None


def _plan_actors(config: LabelJobConfig, how: str) -> ActorPlan:
    cluster = {k: float(v) for k, v in ray.cluster_resources().items()
               if k in ("CPU", "GPU", "memory")}
    gpus, cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 1.0)
    resources = config.actor_resources
    if resources == "auto":
        resources = "gpu" if gpus >= 1 else "cpu"
        logger.info("actor resources auto -> %s (cluster has %g GPUs)", resources, gpus)
    if resources == "gpu" and gpus < 1:
        raise PreflightError(
            f"actor_resources='gpu' but the Ray cluster has no GPU resources ({cluster}); "
            "use --actors-on cpu, or start Ray with --num-gpus"
        )
    if resources == "gpu":
        num_actors = config.num_actors or max(1, int(gpus))
        return ActorPlan(how, "gpu", num_actors, 1.0, 1.0, cluster)
    num_actors = config.num_actors or max(1, int(cpus) // 4)
    return ActorPlan(how, "cpu", num_actors, 0.0, 1.0, cluster)


def _open_store(config: LabelJobConfig) -> MaskStore:
    try:
        return MaskStore.open(config.store, config=store_config(config), mode=config.mode,
                              storage_options=config.storage_options)
    except Exception as exc:
        raise PreflightError(f"cannot open or create the store {config.store!r}: "
                             f"{type(exc).__name__}: {exc}") from exc


def todo_dataset(todo: Todo, config: LabelJobConfig, store: MaskStore) -> ray.data.Dataset:
    """The todo rows as Ray Data blocks of two batches: read tasks read the todo files (no
    driver `ray.put`), a streaming repartition cuts them for the decode tasks."""
    ds = ray.data.read_parquet(list(todo.paths), filesystem=store.filesystem,
                               columns=list(TODO_COLUMNS))
    return ds.repartition(target_num_rows_per_block=config.batch_size * 2)


def _dataset(todo: Todo, config: LabelJobConfig, plan: ActorPlan,
             store: MaskStore) -> ray.data.Dataset:
    """The lazy pipeline: todo rows -> decode -> actors -> writer counts (one part per batch)."""
    ds = todo_dataset(todo, config, store)
    ds = ds.map_batches(decode_batch, batch_size=config.batch_size, batch_format="numpy",
                        num_cpus=1,
                        fn_kwargs={"input_size": config.labeler.input_size,
                                   "max_pixels": config.max_pixels,
                                   "storage_options": config.storage_options})
    ds = ds.map_batches(LabelStage, batch_size=config.batch_size, batch_format="numpy",
                        compute=ActorPoolStrategy(size=plan.num_actors),
                        num_gpus=plan.num_gpus, num_cpus=plan.num_cpus,
                        # a reservation for the model and a batch of activations; differing
                        # remote args also keep the decode tasks from being fused into the
                        # actor. Ray Data restarts a killed actor and retries its batches
                        # (max_restarts=-1, max_task_retries=-1 are its defaults).
                        memory=_ACTOR_MEMORY_BYTES,
                        fn_constructor_kwargs={"labeler": config.labeler,
                                               "config_hash": store.config_hash,
                                               "bf16": config.bf16,
                                               "storage_options": config.storage_options})
    return ds.map_batches(write_batch, batch_size=config.part_rows, batch_format="numpy",
                          num_cpus=0.25, fn_kwargs={"store": store})


def _execute(todo: Todo, config: LabelJobConfig, plan: ActorPlan,
             store: MaskStore) -> RunCounts:
    """Stream the pipeline; only the writer's per-batch count rows reach the driver."""
    DataContext.get_current().enable_progress_bars = config.progress
    counts = RunCounts()
    if todo.num_rows:
        dataset = _dataset(todo, config, plan, store)
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            counts.update(batch)
        logger.info("Ray Data stats:\n%s", dataset.stats())
    return counts


def run_label_job(config: LabelJobConfig) -> dict[str, Any]:
    """Run (or resume) the labelling job; returns the run summary, also saved in the store."""
    clock = _PhaseClock()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    prepared = prepare_run(config, _open_store(config), lap=clock.lap)
    store, todo = prepared.store, prepared.todo
    with ray_session(config.address, num_gpus=_local_gpus(config)) as how:
        plan = _plan_actors(config, how)
        clock.lap("ray_init")
        logger.info("labelling %d images (%d already done) with %d %s actor(s); %s",
                    todo.num_rows, todo.skipped, plan.num_actors, plan.actor_resources, how)
        counts = _execute(todo, config, plan, store)
        clock.lap("pipeline")
    log = final_log(store, prepared.log)
    store.remove_scratch(todo.run_id)
    store_counts = log.status_counts()
    wall_s = clock.total()
    summary = {
        "source": config.source, "store": config.store, "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "manifest_rows": prepared.manifest.num_rows,
        "selected_rows": todo.selected,
        "skipped_committed": todo.skipped, **counts.to_dict(),
        "store_rows": sum(store_counts.values()), "store_counts": store_counts,
        "wall_s": wall_s, "phase_s": clock.laps,
        "images_per_s": counts.processed / wall_s if wall_s > 0 else 0.0,
        "pipeline_images_per_s": (counts.processed / clock.laps["pipeline"]
                                  if clock.laps.get("pipeline") else 0.0),
        "ray": dataclasses.asdict(plan), "config": config.to_dict(), "versions": versions(),
    }
    summary["summary_uri"] = store.write_summary(summary)
    return summary


class _PhaseClock:
    """Wall seconds of the driver's phases (manifest, preflight, ray_init, pipeline)."""

    def __init__(self) -> None:
        self._start = self._last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now

    def total(self) -> float:
        return time.perf_counter() - self._start
