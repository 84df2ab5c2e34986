"""The training job's driver: checks, data on Ray Data, Ray Train's TorchTrainer, the summary.

Only this module and `job_worker` import Ray Train. The driver opens the stores and the run
directory first (a store with no ok rows, a run holding another architecture's checkpoints or
a damaged one: one clear error before any work), prepares the data once into Ray's object store
(`job_data`), and runs `job_worker.train_worker` on `workers` Ray Train workers. A rerun of the
same command (same `--run`) resumes from Ray Train's latest checkpoint: V2 has no
`trainer.restore()`; the run name and storage path are what make `ray.train.get_checkpoint()`
find it.

Sizing on a small machine: each CPU worker reserves min(1, (CPUs - 0.5) / workers) CPUs, so that
at least half a CPU stays free for the augmentation tasks (0.25 CPU each) that feed it.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import time
from datetime import UTC, datetime
from typing import Any

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from autosod.io.filesystem import join_uri, open_filesystem
from autosod.io.status import OK
from autosod.io.store.mask_store import MaskStore
from autosod.models.weights import HUB_SOURCE, resolve_weights
from autosod.package_versions import versions
from autosod.ray_connection import ray_session
from autosod.training.checkpoint import CheckpointError, load_checkpoint
from autosod.training.job_config import BEST_METRIC, TrainJobConfig
from autosod.training.job_data import PreparedData, prepare_data
from autosod.training.job_worker import WorkerPlan, train_worker
from autosod.training.runs import (
    BEST_FILE,
    CHECKPOINT_FILE,
    HISTORY_FILE,
    SUMMARY_FILE,
    best_checkpoint,
    latest_checkpoint,
    local_copy,
    read_run_json,
    remove_run_file,
    storage_location,
)
from autosod.training.summary import format_summary

__all__ = ["TrainJobError", "format_summary", "run_train_job", "worker_cpus"]

logger = logging.getLogger(__name__)

_DATA_CPUS_FREE = 0.5  # CPUs left to the augmentation tasks when workers are sized for a node


class TrainJobError(RuntimeError):
    """A check before training failed, or the training itself failed (one line says which)."""


def _open_stores(config: TrainJobConfig) -> list[MaskStore]:
    """Every store opened read-only; each must hold at least one ok row."""
    stores = []
    for uri in config.stores:
        try:
            store = MaskStore.open(uri, storage_options=config.storage_options)
        except FileNotFoundError as exc:
            raise TrainJobError(f"no mask store at {uri!r} (store.json missing); label images "
                                "into it first with `autosod label`") from exc
        counts = store.status_counts()
        if not counts.get(OK):
            raise TrainJobError(f"store {uri!r} has no ok rows to train on (rows by status: "
                                f"{counts or 'none'}); label images into it first, or leave it "
                                "out")
        stores.append(store)
    return stores


def _check_weights(config: TrainJobConfig) -> None:
    weights = config.train.model.weights
    if weights == HUB_SOURCE:
        return
    try:
        resolve_weights(weights, storage_options=config.storage_options)
    except Exception as exc:
        raise TrainJobError(f"backbone weights {weights!r} cannot be found: "
                            f"{type(exc).__name__}: {exc}") from exc


def _check_run(config: TrainJobConfig) -> int:
    """Epochs already done in the run directory (0 for a new run); a checkpoint that a rerun
    would resume from must load and hold the same architecture."""
    uri = latest_checkpoint(config.run, config.storage_options)
    if uri is None:
        return 0
    try:
        with local_copy(uri, config.storage_options) as path:
            saved = load_checkpoint(path, expect=config.train.model)
    except CheckpointError as exc:
        raise TrainJobError(f"cannot resume run {config.run!r}: {exc}") from exc
    except FileNotFoundError as exc:
        raise TrainJobError(f"run {config.run!r} names {uri!r} as its latest checkpoint but "
                            "it is missing; use a new --run directory") from exc
    return saved.epoch


def _check_init(config: TrainJobConfig) -> TrainJobConfig:
    """With `init_from` (a run directory or checkpoint file): the config naming the checkpoint
    file itself, after checking that it loads and holds this run's architecture."""
    if config.init_from is None:
        return config
    uri = config.init_from
    try:
        if not uri.endswith(".pt"):
            uri = best_checkpoint(uri, config.storage_options)
        with local_copy(uri, config.storage_options) as path:
            load_checkpoint(path, expect=config.train.model)
    except (CheckpointError, FileNotFoundError) as exc:
        raise TrainJobError(f"cannot start from {config.init_from!r}: {exc}") from exc
    return dataclasses.replace(config, init_from=uri)


def worker_cpus(config: TrainJobConfig, cluster_cpus: float) -> float:
    """CPUs each worker reserves: the configured figure, 1 on GPUs, else a share of the CPUs
    that leaves half a CPU to the data tasks (two workers on 2 CPUs: 0.75 each)."""
    if config.cpus_per_worker is not None:
        return config.cpus_per_worker
    if config.gpus:
        return 1.0
    return max(0.25, min(1.0, (cluster_cpus - _DATA_CPUS_FREE) / config.workers))


def _check_cluster(config: TrainJobConfig, cpus: float) -> dict[str, float]:
    cluster = {k: float(v) for k, v in ray.cluster_resources().items()
               if k in ("CPU", "GPU", "memory")}
    if config.gpus and cluster.get("GPU", 0.0) < config.workers:
        raise TrainJobError(f"--gpus asks for {config.workers} GPU worker(s) but the Ray "
                            f"cluster has {cluster.get('GPU', 0.0):g} GPU(s); drop --gpus or "
                            "lower --workers")
    if cpus * config.workers > cluster.get("CPU", 0.0):
        raise TrainJobError(f"{config.workers} worker(s) of {cpus:g} CPU do not fit the "
                            f"cluster's {cluster.get('CPU', 0.0):g} CPUs; lower --workers")
    return cluster


def _check_data(data: PreparedData, config: TrainJobConfig) -> None:
    train, val = len(data.train["image_id"]), len(data.val["image_id"])
    if train < config.train.batch_size or val == 0:
        raise TrainJobError(f"too few usable images: {train} to train (batch size "
                            f"{config.train.batch_size}) and {val} to validate; rows by status "
                            f"{data.counts}; give more stores or lower --min-quality")


def _trainer(config: TrainJobConfig, plan: WorkerPlan, cpus: float) -> TorchTrainer:
    storage_path, name, filesystem = storage_location(config.run, config.storage_options)
    return TorchTrainer(
        train_worker,
        train_loop_config={"plan": plan},
        torch_config=TorchConfig(backend="nccl" if config.gpus else "gloo"),
        scaling_config=ScalingConfig(num_workers=config.workers, use_gpu=config.gpus,
                                     resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(
            name=name, storage_path=storage_path, storage_filesystem=filesystem,
            checkpoint_config=CheckpointConfig(num_to_keep=config.keep,
                                               checkpoint_score_attribute=BEST_METRIC,
                                               checkpoint_score_order="max"),
            failure_config=FailureConfig(max_failures=config.max_failures)),
    )


def _kept_checkpoints(config: TrainJobConfig) -> list[str]:
    fs, path = open_filesystem(config.run, config.storage_options)
    found = [posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)]
    return sorted(join_uri(config.run, name, CHECKPOINT_FILE) for name in found
                  if name.startswith("epoch-"))


def _summary(config: TrainJobConfig, data: PreparedData, resumed: int, cpus: float,
             cluster: dict[str, float], how: str) -> dict[str, Any]:
    history = read_run_json(config.run, HISTORY_FILE, config.storage_options) or []
    best = read_run_json(config.run, BEST_FILE, config.storage_options) or {}
    this_run = [r for r in history if r["epoch"] > resumed]
    images = sum(r["images"] for r in this_run)
    train_s = sum(r["train_s"] for r in this_run)
    wait_s = sum(r["data_wait_share"] * r["train_s"] for r in this_run)
    last = history[-1] if history else {}
    return {
        "stores": list(config.stores), "run": config.run,
        "data": {"counts": data.counts, "error_samples": data.error_samples,
                 "train": len(data.train["image_id"]), "val": len(data.val["image_id"])},
        "epochs": config.train.epochs, "epochs_done": last.get("epoch", 0),
        "epochs_run": len(this_run), "resumed_after_epoch": resumed,
        "images_per_s": images / train_s if train_s else 0.0,
        "images_per_s_per_worker": images / train_s / config.workers if train_s else 0.0,
        "data_wait_share": wait_s / train_s if train_s else 0.0,
        "epoch_s": [r["epoch_s"] for r in this_run],
        "final": {"loss": last.get("loss"), "val": last.get("val"),
                  "val_gt": last.get("val_gt")},
        "best": {**{k: best.get(k) for k in ("epoch", "metric", "value", "val", "val_gt")},
                 "uri": join_uri(config.run, best["checkpoint"]) if best else None},
        "checkpoints": _kept_checkpoints(config), "history": history,
        "workers": config.workers, "ray": {"how": how, "cpus_per_worker": cpus,
                                          "cluster": cluster},
        "config": config.to_dict(), "versions": versions(),
    }


def run_train_job(config: TrainJobConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns the run summary, also saved as RUN/summary.json."""
    from autosod.training.runs import write_run_json

    start = time.perf_counter()
    phases: dict[str, float] = {}
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    stores = _open_stores(config)
    _check_weights(config)
    resumed = _check_run(config)
    config = _check_init(config)
    if resumed >= config.train.epochs:
        logger.info("run %s already holds %d of %d epochs; nothing to train", config.run,
                    resumed, config.train.epochs)
    remove_run_file(config.run, SUMMARY_FILE, config.storage_options)
    phases["checks"] = time.perf_counter() - start
    with ray_session(config.address) as how:
        cpus = worker_cpus(config, float(ray.cluster_resources().get("CPU", 1.0)))
        cluster = _check_cluster(config, cpus)
        mark = time.perf_counter()
        data = prepare_data(stores, config)
        phases["data"] = time.perf_counter() - mark
        _check_data(data, config)
        plan = WorkerPlan(config=config, blocks=data.blocks, train=data.train, val=data.val)
        logger.info("training %s: %d worker(s) of %g CPU%s, epochs %d..%d; %s", config.name,
                    config.workers, cpus, " + 1 GPU" if config.gpus else "", resumed + 1,
                    config.train.epochs, how)
        mark = time.perf_counter()
        try:
            _trainer(config, plan, cpus).fit()
        except Exception as exc:
            raise TrainJobError(f"training failed: {type(exc).__name__}: "
                                f"{str(exc).strip().splitlines()[0] if str(exc) else ''}"
                                ) from exc
        phases["train"] = time.perf_counter() - mark
    summary = _summary(config, data, resumed, cpus, cluster, how)
    summary.update(started_at=started_at, wall_s=time.perf_counter() - start, phase_s=phases,
                   finished_at=datetime.now(UTC).isoformat(timespec="seconds"))
    summary["summary_uri"] = join_uri(config.run, SUMMARY_FILE)
    write_run_json(config.run, SUMMARY_FILE, summary, config.storage_options)
    return summary
