"""What each Ray Train worker runs: resume, epochs of DDP steps, validation, checkpoints.

Every worker builds the same network (same seed), restores the run's latest checkpoint when
there is one (`ray.train.get_checkpoint()`), and each epoch streams its own samples
(`sampling.epoch_steps`) through a Ray Data pipeline of augmentation tasks over the cached
blocks. Losses, validation and ground-truth states are summed across workers
(`collective.all_reduce_sum`), so every worker holds the same figures; rank 0 alone writes the
checkpoint (reported to Ray Train), `history.json` and `best.json`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
from ray.data import DataContext

from autosod.models.autosod_net import build_network
from autosod.training.checkpoint import capture_rng, load_checkpoint, save_checkpoint
from autosod.training.collective import all_reduce_sum
from autosod.training.data import decode_pixels
from autosod.training.gt_validation import gt_metrics, gt_state, load_ground_truth
from autosod.training.job_config import BEST_METRIC, TrainJobConfig
from autosod.training.loop import (
    build_optimizer,
    restore_schedule,
    set_train_mode,
    train_step,
    unwrap,
    validate,
    validation_metrics,
)
from autosod.training.runs import (
    BEST_FILE,
    CHECKPOINT_FILE,
    HISTORY_FILE,
    checkpoint_dir_name,
    local_copy,
    write_run_json,
)
from autosod.training.sampling import augment_samples, epoch_steps, steps_per_epoch, whole_view
from autosod.training.summary import epoch_line

__all__ = ["WorkerPlan", "train_worker"]

logger = logging.getLogger(__name__)

_LOSS_KEYS = ("loss", "bce", "dice", "rank")
_VAL_BATCH = 8
_PREFETCH_BATCHES = 4


@dataclass(frozen=True)
class WorkerPlan:
    """What the driver hands every worker (picklable; the blocks are ObjectRefs)."""

    config: TrainJobConfig
    blocks: list[Any]
    train: dict[str, np.ndarray]  # block, row, image_id, weight; sorted by image_id
    val: dict[str, np.ndarray]


def _rows(index: dict[str, np.ndarray], take: np.ndarray) -> list[dict]:
    return [{"block": int(index["block"][i]), "row": int(index["row"][i]),
             "image_id": str(index["image_id"][i]), "weight": float(index["weight"][i])}
            for i in take]


def _pixels(blocks: list[Any], cache: dict[int, Any], block: int, row: int) -> tuple:
    if block not in cache:
        cache[block] = ray.get(blocks[block])
    table = cache[block]
    return decode_pixels(table.column("image")[row].as_py(), table.column("mask")[row].as_py(),
                         table.column("height")[row].as_py(), table.column("width")[row].as_py())


def _augment_batch(batch: dict[str, np.ndarray], *, blocks: list[Any], seed: int, epoch: int,
                   size_px: int, augment: Any) -> dict[str, np.ndarray]:
    """A Ray Data task: slot rows -> augmented images, masks and weights, in the same order."""
    cache: dict[int, Any] = {}
    pairs = [_pixels(blocks, cache, int(b), int(r))
             for b, r in zip(batch["block"], batch["row"], strict=True)]
    images, masks = augment_samples([p[0] for p in pairs], [p[1] for p in pairs],
                                    [str(i) for i in batch["image_id"]], seed=seed, epoch=epoch,
                                    size_px=size_px, config=augment)
    return {"image": images, "mask": masks, "weight": np.asarray(batch["weight"], np.float32)}


def _epoch_batches(plan: WorkerPlan, epoch: int, rank: int, world: int):
    """This worker's batches of `epoch`, in step order (a Ray Data pipeline per epoch)."""
    train = plan.config.train
    slots = epoch_steps(len(plan.train["image_id"]), seed=train.seed, epoch=epoch,
                        batch_size=train.batch_size, world_size=world, rank=rank)
    ds = ray.data.from_items(_rows(plan.train, slots.ravel()),
                             override_num_blocks=max(1, len(slots)))
    ds = ds.map_batches(_augment_batch, batch_size=slots.shape[1], batch_format="numpy",
                        num_cpus=plan.config.data_cpus,
                        fn_kwargs={"blocks": plan.blocks, "seed": train.seed, "epoch": epoch,
                                   "size_px": train.model.input_size_px,
                                   "augment": train.augment})
    return ds.iter_batches(batch_size=slots.shape[1], batch_format="numpy",
                           prefetch_batches=_PREFETCH_BATCHES)


def _val_batches(plan: WorkerPlan, rank: int, world: int) -> list[dict[str, np.ndarray]]:
    """This worker's share of the validation split, squeezed to the prediction size, once."""
    size, cache = plan.config.train.predict_size_px, {}
    views = [whole_view(*_pixels(plan.blocks, cache, int(plan.val["block"][i]),
                                 int(plan.val["row"][i])), size)
             for i in range(rank, len(plan.val["image_id"]), world)]
    return [{"image": np.stack([v[0] for v in views[s : s + _VAL_BATCH]]),
             "mask": np.stack([v[1] for v in views[s : s + _VAL_BATCH]])}
            for s in range(0, len(views), _VAL_BATCH)]


def _threads(config: TrainJobConfig, local_world: int) -> int:
    if config.threads:
        return config.threads
    node = ray.get_runtime_context().get_node_id()
    cpus = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node), 1)
    return max(1, int(cpus // max(1, local_world)))


@dataclass
class _State:
    net: Any
    optimizer: Any
    scheduler: Any
    epoch: int = 0
    step: int = 0
    history: list | None = None
    best: dict | None = None


def _initial_state(plan: WorkerPlan, device: torch.device) -> _State:
    """The network, optimiser and schedule; restored from the run's latest checkpoint if any."""
    config = plan.config
    checkpoint = ray.train.get_checkpoint()
    torch.manual_seed(config.train.seed)
    init = config.init_from if checkpoint is None else None
    net = build_network(config.train.model, pretrained=checkpoint is None and init is None,
                        storage_options=config.storage_options)
    if init is not None:  # a new run starting from another run's weights (self-training)
        with local_copy(init, config.storage_options) as path:
            net.load_state_dict(load_checkpoint(path, expect=config.train.model).model_state)
        logger.info("run %s starts from the weights of %s", config.run, init)
    total = steps_per_epoch(len(plan.train["image_id"]), config.train.batch_size) * \
        config.train.epochs
    optimizer, scheduler = build_optimizer(net, config.train, total_steps=total)
    state = _State(net=net, optimizer=optimizer, scheduler=scheduler, history=[])
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = load_checkpoint(Path(folder) / CHECKPOINT_FILE, expect=config.train.model)
        net.load_state_dict(saved.model_state)
        optimizer.load_state_dict(saved.optimizer_state)
        planned = restore_schedule(scheduler, saved.scheduler_state, total_steps=total)
        if planned != total:
            logger.info("run %s: the learning-rate schedule now ends at step %d (%d epochs) "
                        "instead of %d", config.run, total, config.train.epochs, planned)
        state.epoch, state.step = saved.epoch, saved.step
        state.history = list(saved.metadata.get("history", []))
        state.best = saved.metadata.get("best")
        logger.info("resuming run %s after epoch %d (step %d)", config.run, saved.epoch,
                    saved.step)
    net.to(device)
    return state


def _train_epoch(model: Any, state: _State, plan: WorkerPlan, epoch: int, rank: int,
                 world: int, device: torch.device) -> dict[str, Any]:
    """One epoch of steps; the global figures (every worker gets the same)."""
    train = plan.config.train
    seed = np.random.SeedSequence([train.seed, epoch, rank]).generate_state(1)[0]
    torch.manual_seed(int(seed))  # dropout draws: reproducible on resume
    set_train_mode(model, freeze_bn=train.freeze_bn)
    losses, wait_s, lr = [], 0.0, 0.0
    start = time.perf_counter()
    batches = iter(_epoch_batches(plan, epoch, rank, world))
    while True:
        ready = time.perf_counter()
        batch = next(batches, None)
        wait_s += time.perf_counter() - ready
        if batch is None:
            break
        out = train_step(model, batch, state.optimizer, state.scheduler, train,
                         bf16=plan.config.use_bf16)
        losses.append([out[k] for k in _LOSS_KEYS])
        lr = out["lr"]
    seconds = time.perf_counter() - start
    local = np.asarray(losses, np.float64).reshape(-1, len(_LOSS_KEYS))
    summed = all_reduce_sum({"losses": local, "wait_s": wait_s, "seconds": seconds,
                             "images": len(local) * train.batch_size // world}, device)
    steps = len(local)
    state.step += steps
    mean = summed["losses"] / world  # each worker's loss is its mean over B / W images
    out = {k: float(mean[:, i].mean()) if steps else float("nan")
           for i, k in enumerate(_LOSS_KEYS)}
    train_s = float(summed["seconds"]) / world
    out.update({"steps": steps, "images": int(summed["images"]), "train_s": train_s,
                "images_per_s": float(summed["images"]) / train_s if train_s else 0.0,
                "data_wait_share": float(summed["wait_s"]) / world / train_s if train_s else 0.0,
                "lr": lr, "step_loss": [float(v) for v in mean[:, 0]]})
    return out


def _validate(model: Any, val_batches: list, gt_sets: list, plan: WorkerPlan,
              device: torch.device) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    train = plan.config.train
    state = all_reduce_sum(validate(model, val_batches, train, bf16=plan.config.use_bf16),
                           device)
    val = validation_metrics(state)
    gt = {s.name: gt_metrics(all_reduce_sum(gt_state(unwrap(model), s,
                                                     flip_average=train.flip_average), device))
          for s in gt_sets}
    return val, gt


def _report(state: _State, record: dict[str, Any], plan: WorkerPlan, rank: int) -> None:
    """Rank 0 writes the checkpoint; every worker reports (Ray Train's barrier)."""
    metrics = {"epoch": record["epoch"], "step": state.step, "loss": record["loss"],
               **{f"val_{k}": v for k, v in record["val"].items()}}
    for name, figures in record["val_gt"].items():
        metrics.update({f"gt_{name}_{k}": v for k, v in figures.items()})
    with tempfile.TemporaryDirectory(prefix="autosod-ckpt-") as folder:
        checkpoint = None
        if rank == 0:
            save_checkpoint(Path(folder) / CHECKPOINT_FILE, model=state.net,
                            optimizer=state.optimizer, scheduler=state.scheduler,
                            epoch=record["epoch"], step=state.step, rng=capture_rng(),
                            metadata={"history": state.history, "best": state.best,
                                      "train": plan.config.train.to_dict(),
                                      "stores": list(plan.config.stores)})
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint,
                         checkpoint_dir_name=checkpoint_dir_name(record["epoch"]))


def _write_records(state: _State, plan: WorkerPlan) -> None:
    options = plan.config.storage_options
    write_run_json(plan.config.run, HISTORY_FILE, state.history, options)
    if state.best is not None:
        write_run_json(plan.config.run, BEST_FILE, state.best, options)


def _best(state: _State, record: dict[str, Any], plan: WorkerPlan) -> dict[str, Any]:
    """The new best record when this epoch's val_iou is at least the best so far (later ties
    win, as in Ray Train's ranking of kept checkpoints)."""
    value = record["val"]["iou"]
    if state.best is not None and value < state.best["value"]:
        return state.best
    train = plan.config.train
    return {"checkpoint": record["checkpoint"], "epoch": record["epoch"],
            "metric": BEST_METRIC, "value": value, "val": record["val"],
            "val_gt": record["val_gt"], "model_config": train.model.to_json(),
            "predict_size_px": train.predict_size_px, "flip_average": train.flip_average}


def train_worker(loop_config: dict[str, Any]) -> None:
    """The TorchTrainer training function (`train_loop_config={"plan": WorkerPlan}`)."""
    plan: WorkerPlan = loop_config["plan"]
    config = plan.config
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(_threads(config, context.get_local_world_size()))
    data_context = DataContext.get_current()
    data_context.execution_options.preserve_order = True  # batches arrive in step order
    data_context.enable_progress_bars = config.progress
    device = ray.train.torch.get_device()
    state = _initial_state(plan, device)
    model = ray.train.torch.prepare_model(state.net)
    val_batches = _val_batches(plan, rank, world)
    gt_sets = [load_ground_truth(b, size_px=config.train.predict_size_px, rank=rank,
                                 world_size=world, max_pixels=config.max_pixels,
                                 storage_options=config.storage_options) for b in config.val_gt]
    if rank == 0 and state.history:
        _write_records(state, plan)  # a rerun repairs records a kill left behind
    for epoch in range(state.epoch, config.train.epochs):
        started = time.perf_counter()
        record = {"epoch": epoch + 1, **_train_epoch(model, state, plan, epoch, rank, world,
                                                      device)}
        val_start = time.perf_counter()
        record["val"], record["val_gt"] = _validate(model, val_batches, gt_sets, plan, device)
        record["val_s"] = time.perf_counter() - val_start
        record["epoch_s"] = time.perf_counter() - started
        record["checkpoint"] = f"{checkpoint_dir_name(epoch + 1)}/{CHECKPOINT_FILE}"
        state.history.append(record)
        state.best = _best(state, record, plan)
        _report(state, record, plan, rank)
        if rank == 0:
            _write_records(state, plan)
            logger.info("%s", epoch_line(record, config.train.epochs))
