"""The store pipeline on Ray Data that labelling and prediction share: todo rows -> decode tasks
-> an actor pool (`actor.MapStage`: POTNet, or a trained network) -> encode tasks -> writer.

`run_store_job` is the whole driver: reach Ray, plan the actors, open the store with the config
it records, `prepare.prepare_run` (manifest, resume, todo files), stream the pipeline, and write
the run summary. Each job passes what differs: what the store records, its actor body and that
body's arguments, and the check of its model before any work.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ray
from ray.data import ActorPoolStrategy, DataContext

from autosod.io.store.mask_store import MaskStore
from autosod.io.store.schema import config_hash
from autosod.labeling.attempts import LocalAttempts
from autosod.labeling.config import JobSettings
from autosod.labeling.prepare import PreflightError, Todo, final_log, prepare_run
from autosod.labeling.resources import ActorPlan, PlanError, plan_actors
from autosod.labeling.stages import decode_batch, encode_batch, read_todo, write_batch
from autosod.labeling.summary import RunCounts
from autosod.package_versions import versions
from autosod.ray_connection import ray_session

__all__ = [
    "ActorStage",
    "SharedAttempts",
    "check_store_before_ray",
    "run_store_job",
    "todo_dataset",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActorStage:
    """A job's actor body (`MapStage` subclass) and the arguments of its constructor, besides the
    ones every job passes (config_hash, precision, threads, map_budget_bytes, attempts,
    storage_options)."""

    cls: type
    kwargs: dict[str, Any]
    threshold: float  # of the binary mask, for rows the encode tasks upsample


def _local_gpus(config: JobSettings) -> int | None:
    """Logical GPUs for a single-node Ray started here when GPU actors are asked for."""
    return (config.num_actors or 1) if config.actor_resources == "gpu" else None


def _plan_actors(config: JobSettings, how: str) -> ActorPlan:
    node_cpus = [float(node["Resources"].get("CPU", 0.0)) for node in ray.nodes()
                 if node.get("Alive")]
    try:
        plan = plan_actors(config, how=how, cluster=ray.cluster_resources(), node_cpus=node_cpus)
    except PlanError as exc:
        raise PreflightError(str(exc)) from exc
    logger.info("actor plan: %s", plan.describe())
    return plan


class SharedAttempts:
    """The `actor.Attempts` ledger of a run: one Ray actor that every map actor asks, so that a
    batch retried on a restarted actor knows an earlier attempt died (picklable)."""

    def __init__(self) -> None:
        self._ledger = ray.remote(num_cpus=0)(LocalAttempts).remote()

    def begin(self, key: str) -> int:
        return ray.get(self._ledger.begin.remote(key))

    def end(self, key: str) -> None:
        self._ledger.end.remote(key)  # no wait: one caller's calls run in order


def check_store_before_ray(config: JobSettings, possible: list[dict[str, Any]]) -> None:
    """Refuse, before Ray starts, a store written with other settings: its hash must be one of
    the `possible` configs of this run (e.g. at either precision: the actor plan, made on the
    cluster, picks which; `_open_store` then checks the exact one)."""
    if config.mode == "overwrite" or not possible:
        return
    try:
        existing = MaskStore.open(config.store, storage_options=config.storage_options)
    except FileNotFoundError:
        return  # a new store: created once the plan is known
    except Exception as exc:
        raise PreflightError(f"cannot open the store {config.store!r}: "
                             f"{type(exc).__name__}: {exc}") from exc
    if existing.config_hash not in {config_hash(recorded) for recorded in possible}:
        _open_store(config, possible[0])  # raises the mismatch, naming both hashes and changes


def _open_store(config: JobSettings, recorded: dict[str, Any]) -> MaskStore:
    try:
        return MaskStore.open(config.store, config=recorded, mode=config.mode,
                              storage_options=config.storage_options)
    except Exception as exc:
        raise PreflightError(f"cannot open or create the store {config.store!r}: "
                             f"{type(exc).__name__}: {exc}") from exc


def todo_dataset(todo: Todo, config: JobSettings, store: MaskStore,
                 task_cpus: float = 1.0) -> ray.data.Dataset:
    """The todo rows as Ray Data blocks of one actor batch, read by tasks of `task_cpus` / 2 CPUs
    from the todo files (no driver `ray.put` of rows: only the file names are items); the
    streaming repartition, fused into those tasks, cuts the blocks (Ray Data would otherwise
    merge a task's outputs into large blocks). One batch per block spreads
    the last blocks evenly over the actors (blocks of two batches left one of two CPU actors
    idle for a batch at the end); the reservation, unlike the decode tasks', keeps the decoding
    out of the reading task, whose output Ray Data would merge into large blocks.

    Not `ray.data.read_parquet`: in Ray 2.60 its file-listing task always reserves a whole CPU,
    which a node whose actors hold all but a fraction of its CPUs never frees (a 2-core node
    with two CPU actors waited forever when the actors started first)."""
    ds = ray.data.from_items([{"path": path} for path in todo.paths])
    ds = ds.map_batches(read_todo, batch_size=config.batch_size, batch_format="numpy",
                        num_cpus=task_cpus / 2,
                        fn_kwargs={"store": store, "rows_per_block": config.batch_size})
    ds = ds.repartition(target_num_rows_per_block=config.batch_size)
    # Ray 2.60's repartition has no resource option and its tasks default to a whole CPU: the
    # same wait as the listing's. Its logical operator's remote args are what its tasks get
    # (with the reading tasks' reservation, Ray Data also fuses the two).
    ds._logical_plan.dag.ray_remote_args.update(num_cpus=task_cpus / 2)
    return ds


def _dataset(todo: Todo, config: JobSettings, plan: ActorPlan, store: MaskStore,
             stage: ActorStage) -> ray.data.Dataset:
    """The lazy pipeline: todo rows -> decode -> actors -> writer counts (one part per batch)."""
    ds = todo_dataset(todo, config, store, plan.task_cpus)
    ds = ds.map_batches(decode_batch, batch_size=config.batch_size, batch_format="numpy",
                        num_cpus=plan.task_cpus,
                        fn_kwargs={"input_size": config.input_size,
                                   "max_pixels": config.max_pixels,
                                   "storage_options": config.storage_options})
    ds = ds.map_batches(stage.cls, batch_size=config.batch_size, batch_format="numpy",
                        # one batch running and one queued per actor: fed without gaps,
                        # and no actor holds a backlog while another has run dry
                        compute=ActorPoolStrategy(size=plan.num_actors,
                                                  max_tasks_in_flight_per_actor=2),
                        num_gpus=plan.num_gpus, num_cpus=plan.num_cpus,
                        # the model, a batch of activations and the batch's full-size maps
                        # (bounded by map_budget_bytes); differing remote args also keep the
                        # decode tasks from being fused into the actor. Ray Data restarts a
                        # killed actor and retries its batches (max_restarts=-1,
                        # max_task_retries=-1 are its defaults); the shared attempts ledger
                        # bounds how often one image may kill an actor.
                        memory=plan.memory_bytes,
                        fn_constructor_kwargs={**stage.kwargs,
                                               "config_hash": store.config_hash,
                                               "precision": plan.precision,
                                               "threads": plan.threads,
                                               "map_budget_bytes": plan.map_budget_bytes,
                                               "attempts": SharedAttempts(),
                                               "storage_options": config.storage_options})
    ds = ds.map_batches(encode_batch, batch_size=config.batch_size, batch_format="numpy",
                        num_cpus=plan.task_cpus, fn_kwargs={"threshold": stage.threshold})
    # the writer mostly waits on storage: half an encode task's CPUs. The differing reservation
    # also keeps Ray Data from fusing the encoding into the writer's large batches, which would
    # encode hundreds of images in one task after the actors finish instead of beside them.
    return ds.map_batches(write_batch, batch_size=config.part_rows, batch_format="numpy",
                          num_cpus=plan.task_cpus / 2, fn_kwargs={"store": store})


def _execute(todo: Todo, config: JobSettings, plan: ActorPlan, store: MaskStore,
             stage: ActorStage) -> RunCounts:
    """Stream the pipeline; only the writer's per-batch count rows reach the driver."""
    DataContext.get_current().enable_progress_bars = config.progress
    counts = RunCounts()
    if todo.num_rows:
        dataset = _dataset(todo, config, plan, store, stage)
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            counts.update(batch)
        logger.info("Ray Data stats:\n%s", dataset.stats())
    return counts


def run_store_job(
    config: JobSettings,
    *,
    recorded: Callable[[ActorPlan], dict[str, Any]],
    stage: ActorStage,
    check_model: Callable[[], None] | None = None,
    extra: dict[str, Any] | None = None,
    possible: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run (or resume) a store job; returns the run summary, also saved in the store.

    `recorded(plan)`: the config the store records and hashes (after the plan: it may record the
    actors' precision). `check_model`: the preflight check of the model (default: the
    labeller's weights). `extra`: more keys for the summary. `possible`: every config
    `recorded` may return, checked against an existing store before Ray starts.
    """
    clock = _PhaseClock()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    check_store_before_ray(config, possible or [])
    with ray_session(config.address, num_gpus=_local_gpus(config)) as how:
        plan = _plan_actors(config, how)  # first: the store's config records its precision
        clock.lap("ray_init")
        prepared = prepare_run(config, _open_store(config, recorded(plan)), lap=clock.lap,
                               check_model=check_model)
        store, todo = prepared.store, prepared.todo
        logger.info("processing %d images (%d already done) with %s; %s",
                    todo.num_rows, todo.skipped, plan.describe(), plan.how)
        counts = _execute(todo, config, plan, store, stage)
        clock.lap("pipeline")
    log = final_log(store, prepared.log)
    store.remove_scratch(todo.run_id)
    store_counts = log.status_counts()
    wall_s = clock.total()
    summary = {
        "source": config.source, "store": config.store, **(extra or {}),
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "manifest_rows": prepared.manifest.num_rows,
        "selected_rows": todo.selected,
        "skipped_committed": todo.skipped, **counts.to_dict(),
        "store_rows": sum(store_counts.values()), "store_counts": store_counts,
        "wall_s": wall_s, "phase_s": clock.laps,
        "images_per_s": counts.processed / wall_s if wall_s > 0 else 0.0,
        "pipeline_images_per_s": (counts.processed / clock.laps["pipeline"]
                                  if clock.laps.get("pipeline") else 0.0),
        "ray": {**dataclasses.asdict(plan), "plan": plan.describe()},
        "config": config.to_dict(), "versions": versions(),
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
