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
from datetime import UTC, datetime
from typing import Any

import ray
from ray.data import ActorPoolStrategy, DataContext

from autosod.io.store.mask_store import MaskStore
from autosod.io.store.schema import config_hash
from autosod.labeling.actor import LabelStage, LocalAttempts
from autosod.labeling.config import LabelerConfig, LabelJobConfig, labeler_record
from autosod.labeling.prepare import (
    PreflightError,
    Todo,
    final_log,
    prepare_run,
    read_todo_files,
)
from autosod.labeling.resources import ActorPlan, PlanError, plan_actors
from autosod.labeling.stages import decode_batch, encode_batch, write_batch
from autosod.labeling.summary import RunCounts, format_summary, versions
from autosod.ray_connection import ray_session

__all__ = ["ActorPlan", "PreflightError", "format_summary", "run_label_job", "store_config",
           "todo_dataset"]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
_HASHED_DEVICE = LabelerConfig().device  # the device the store's config records, whatever ran


def store_config(config: LabelJobConfig, precision: str = "fp32") -> dict[str, Any]:
    """What the store records and hashes: what changes the masks. That is the labeler, with its
    `device` recorded as "auto" (any device gives the same masks at one precision, up to float
    rounding), and the backbone's precision when it is bf16: an fp32 run adds nothing, so its
    hash is the one stores had before precision was recorded (CPU runs resume old stores)."""
    labeler = labeler_record(config.labeler)
    labeler["device"] = _HASHED_DEVICE
    recorded: dict[str, Any] = {"labeler": labeler}
    if precision == "bf16":
        recorded["precision"] = "bf16"
    return recorded


def _local_gpus(config: LabelJobConfig) -> int | None:
    """Logical GPUs for a single-node Ray started here when GPU actors are asked for."""
    return (config.num_actors or 1) if config.actor_resources == "gpu" else None


def _plan_actors(config: LabelJobConfig, how: str) -> ActorPlan:
    node_cpus = [float(node["Resources"].get("CPU", 0.0)) for node in ray.nodes()
                 if node.get("Alive")]
    try:
        plan = plan_actors(config, how=how, cluster=ray.cluster_resources(), node_cpus=node_cpus)
    except PlanError as exc:
        raise PreflightError(str(exc)) from exc
    logger.info("actor plan: %s", plan.describe())
    return plan


class _SharedAttempts:
    """The `actor.Attempts` ledger of a run: one Ray actor that every POTNet actor asks, so that a
    batch retried on a restarted actor knows an earlier attempt died (picklable)."""

    def __init__(self) -> None:
        self._ledger = ray.remote(num_cpus=0)(LocalAttempts).remote()

    def begin(self, key: str) -> int:
        return ray.get(self._ledger.begin.remote(key))

    def end(self, key: str) -> None:
        self._ledger.end.remote(key)  # no wait: one caller's calls run in order


def check_store_before_ray(config: LabelJobConfig) -> None:
    """Refuse, before Ray starts, a store written with other mask settings: its hash must be
    this run's at one of the two precisions (the actor plan, made on the cluster, picks which;
    `_open_store` then checks the exact one)."""
    if config.mode == "overwrite":
        return
    try:
        existing = MaskStore.open(config.store, storage_options=config.storage_options)
    except FileNotFoundError:
        return  # a new store: created once the plan is known
    except Exception as exc:
        raise PreflightError(f"cannot open the store {config.store!r}: "
                             f"{type(exc).__name__}: {exc}") from exc
    if existing.config_hash not in {config_hash(store_config(config, p)) for p in PRECISIONS}:
        _open_store(config, "fp32")  # raises the mismatch, naming both hashes and the changes


def _open_store(config: LabelJobConfig, precision: str) -> MaskStore:
    try:
        return MaskStore.open(config.store, config=store_config(config, precision),
                              mode=config.mode,
                              storage_options=config.storage_options)
    except Exception as exc:
        raise PreflightError(f"cannot open or create the store {config.store!r}: "
                             f"{type(exc).__name__}: {exc}") from exc


def todo_dataset(todo: Todo, config: LabelJobConfig, store: MaskStore, *,
                 task_cpus: float = 0.125) -> ray.data.Dataset:
    """The todo rows as Ray Data blocks of one actor batch: tasks of `task_cpus` read the todo
    files (no driver `ray.put` of rows), a streaming repartition, also of `task_cpus`, cuts them
    for the decode tasks.

    Neither `ray.data.read_parquet` nor `Dataset.repartition`: their tasks always reserve a
    whole CPU, which a 2-CPU node whose actors hold 1.75 never frees (the run waited forever).
    One batch per block spreads the last blocks evenly over the actors (blocks of two batches
    left one of two CPU actors idle for a batch at the end)."""
    ds = ray.data.from_items([{"path": path} for path in todo.paths])
    ds = ds.map_batches(read_todo_files, batch_size=1, batch_format="numpy", num_cpus=task_cpus,
                        fn_kwargs={"store": store})
    return _repartition(ds, config.batch_size, num_cpus=task_cpus)


def _repartition(ds: ray.data.Dataset, rows: int, *, num_cpus: float) -> ray.data.Dataset:
    """`ds.repartition(target_num_rows_per_block=rows)` with tasks of `num_cpus` CPUs: Ray
    2.60's `repartition` takes no remote args, its logical operator does (pinned Ray)."""
    from ray.data._internal.logical.interfaces import LogicalPlan
    from ray.data._internal.logical.operators.map_operator import StreamingRepartition

    op = StreamingRepartition(target_num_rows_per_block=rows,
                              input_dependencies=[ds._logical_plan.dag],
                              ray_remote_args={"num_cpus": num_cpus})
    return ray.data.Dataset._from_parent(ds, LogicalPlan(op, ds.context))


def _dataset(todo: Todo, config: LabelJobConfig, plan: ActorPlan,
             store: MaskStore) -> ray.data.Dataset:
    """The lazy pipeline: todo rows -> decode -> actors -> writer counts (one part per batch)."""
    ds = todo_dataset(todo, config, store, task_cpus=plan.task_cpus)
    ds = ds.map_batches(decode_batch, batch_size=config.batch_size, batch_format="numpy",
                        num_cpus=plan.task_cpus,
                        fn_kwargs={"input_size": config.labeler.input_size,
                                   "max_pixels": config.max_pixels,
                                   "storage_options": config.storage_options})
    ds = ds.map_batches(LabelStage, batch_size=config.batch_size, batch_format="numpy",
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
                        fn_constructor_kwargs={"labeler": config.labeler,
                                               "config_hash": store.config_hash,
                                               "precision": plan.precision,
                                               "threads": plan.threads,
                                               "map_budget_bytes": plan.map_budget_bytes,
                                               "attempts": _SharedAttempts(),
                                               "storage_options": config.storage_options})
    ds = ds.map_batches(encode_batch, batch_size=config.batch_size, batch_format="numpy",
                        num_cpus=plan.task_cpus,
                        fn_kwargs={"threshold": config.labeler.potnet.mask_threshold})
    # the writer mostly waits on storage: half an encode task's CPUs. The differing reservation
    # also keeps Ray Data from fusing the encoding into the writer's large batches, which would
    # encode hundreds of images in one task after the actors finish instead of beside them.
    return ds.map_batches(write_batch, batch_size=config.part_rows, batch_format="numpy",
                          num_cpus=plan.task_cpus / 2, fn_kwargs={"store": store})


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
    check_store_before_ray(config)
    with ray_session(config.address, num_gpus=_local_gpus(config)) as how:
        plan = _plan_actors(config, how)  # first: the store's config records its precision
        clock.lap("ray_init")
        prepared = prepare_run(config, _open_store(config, plan.precision), lap=clock.lap)
        store, todo = prepared.store, prepared.todo
        logger.info("labelling %d images (%d already done) with %s; %s",
                    todo.num_rows, todo.skipped, plan.describe(), plan.how)
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
