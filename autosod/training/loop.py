"""The training loop (torch only, no Ray): optimiser and schedule, steps, epochs, validation.

Batches are dicts of NumPy arrays, as Ray Data hands them to a worker:
`image` (B, S, S, 3) uint8, `mask` (B, S, S) uint8 soft pseudo-mask, `weight` (B,) float32.
The model may be wrapped in DistributedDataParallel; `unwrap` reaches the network itself.
Validation returns a state of sums (`validation_state`), so the states of several workers add up
(`merge_validation_states`) before `validation_metrics` turns them into numbers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from autosod.evaluation.fmeasure import FmeasureAccumulator
from autosod.evaluation.pixelwise import IouAccumulator, MaeAccumulator
from autosod.models.autosod_net import AutoSodNet
from autosod.models.losses import LossTerms, autosod_loss
from autosod.models.outputs import best_query_logits
from autosod.training.config import TrainConfig

__all__ = [
    "WarmupCosine",
    "batch_tensors",
    "build_optimizer",
    "merge_validation_states",
    "restore_schedule",
    "set_train_mode",
    "train_epoch",
    "train_step",
    "unwrap",
    "validate",
    "validation_metrics",
]

_LOSS_KEYS = ("loss", "bce", "dice", "rank")


def unwrap(model: nn.Module) -> AutoSodNet:
    """The network inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def batch_tensors(
    batch: Mapping[str, np.ndarray], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch dict -> uint8 images (B, S, S, 3), float target (B, S, S) in [0, 1], weights (B,)."""
    images, masks = np.asarray(batch["image"]), np.asarray(batch["mask"])
    if images.dtype != np.uint8 or images.ndim != 4 or masks.shape != images.shape[:3]:
        raise ValueError(
            f"batch must hold image uint8 (B, S, S, 3) and mask (B, S, S), got image "
            f"{images.dtype} {images.shape} and mask {masks.dtype} {masks.shape}"
        )
    weight = batch.get("weight")
    weights = np.ones(len(images), np.float32) if weight is None else np.asarray(weight)
    target = torch.as_tensor(masks, device=device).float() / 255.0
    return (
        torch.as_tensor(images, device=device),
        target,
        torch.as_tensor(weights, dtype=torch.float32, device=device),
    )


def set_train_mode(model: nn.Module, *, freeze_bn: bool) -> None:
    """model.train(); with `freeze_bn` the backbone's BatchNorm layers stay in eval mode."""
    model.train()
    if freeze_bn:
        for module in unwrap(model).backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


class WarmupCosine:
    """LR factor: linear warm-up over `warmup_steps`, cosine from 1 to `min_ratio` at
    `total_steps`, then `min_ratio`. A callable object, so LambdaLR saves its state."""

    def __init__(self, *, warmup_steps: int, total_steps: int, min_ratio: float) -> None:
        self.warmup_steps, self.total_steps, self.min_ratio = warmup_steps, total_steps, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module, config: TrainConfig, *, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (backbone at lr * backbone_lr_scale; no weight decay on norms, biases, embeddings)
    and the warm-up + cosine schedule over `total_steps` optimiser steps."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in unwrap(model).named_parameters():
        if not param.requires_grad:
            continue
        decay = param.ndim >= 2 and "query_feat" not in name and "query_pos" not in name
        groups.setdefault((name.startswith("backbone."), decay), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": config.lr * (config.backbone_lr_scale if backbone else 1.0),
            "weight_decay": config.weight_decay if decay else 0.0,
        }
        for (backbone, decay), params in sorted(groups.items())
    ]
    optimizer = torch.optim.AdamW(param_groups, lr=config.lr)
    schedule = WarmupCosine(
        warmup_steps=config.warmup_steps, total_steps=total_steps, min_ratio=config.min_lr_ratio
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def restore_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict[str, Any], *,
                     total_steps: int) -> int:
    """Load a saved warm-up + cosine schedule, ending it at `total_steps` (this run's): a rerun
    asking for more or fewer epochs stretches or shortens the cosine from the step it resumes
    at, instead of keeping the first run's end (LambdaLR's state holds the schedule's fields).
    The optimiser's learning rates are set for the resumed step. Returns the saved end."""
    scheduler.load_state_dict(state)
    saved = scheduler.lr_lambdas[0].total_steps
    for schedule in scheduler.lr_lambdas:
        schedule.total_steps = total_steps
    optimizer = scheduler.optimizer
    for group, base, schedule in zip(optimizer.param_groups, scheduler.base_lrs,
                                     scheduler.lr_lambdas, strict=True):
        group["lr"] = base * schedule(scheduler.last_epoch)
    return saved


def _terms(terms: LossTerms) -> dict[str, float]:
    return dict(zip(_LOSS_KEYS, (float(t.detach()) for t in terms), strict=True))


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on the model's device when asked (the job asks on GPUs)."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def train_step(
    model: nn.Module,
    batch: Mapping[str, np.ndarray],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    config: TrainConfig,
    *,
    bf16: bool = False,
) -> dict[str, float]:
    """One optimisation step on `batch`; returns its loss terms and the (decoder) learning rate.

    With `bf16` the forward pass runs under bfloat16 autocast (the losses in float32)."""
    net = unwrap(model)
    device = net.backbone.mean.device
    images, target, weights = batch_tensors(batch, device)
    if not config.quality_weighting:
        weights = torch.ones_like(weights)
    with _autocast(device, bf16):
        output = model(net.preprocess(images))
    terms = autosod_loss(output, target, weights, config.loss)
    optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    if config.grad_clip_norm > 0:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
    lr = max(group["lr"] for group in optimizer.param_groups)  # the decoder's
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return {**_terms(terms), "lr": lr}


def train_epoch(
    model: nn.Module,
    batches: Iterable[Mapping[str, np.ndarray]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    config: TrainConfig,
    *,
    bf16: bool = False,
) -> dict[str, float]:
    """`train_step` over `batches` in train mode; the mean of each term, `steps` and `images`."""
    set_train_mode(model, freeze_bn=config.freeze_bn)
    sums = dict.fromkeys(_LOSS_KEYS, 0.0)
    steps = images = 0
    for batch in batches:
        out = train_step(model, batch, optimizer, scheduler, config, bf16=bf16)
        for key in _LOSS_KEYS:
            sums[key] += out[key]
        steps += 1
        images += len(batch["image"])
    return {**{k: v / max(steps, 1) for k, v in sums.items()}, "steps": steps, "images": images}


def _accumulators() -> dict[str, FmeasureAccumulator | IouAccumulator | MaeAccumulator]:
    return {"fmeasure": FmeasureAccumulator(), "iou": IouAccumulator(), "mae": MaeAccumulator()}


@torch.no_grad()
def validate(
    model: nn.Module,
    batches: Iterable[Mapping[str, np.ndarray]],
    config: TrainConfig,
    *,
    bf16: bool = False,
) -> dict[str, np.ndarray]:
    """Loss (unweighted) and metrics against the pseudo-masks (binarised at 128) -> a state of
    sums: `loss_sum`, `bce_sum`, `dice_sum`, `rank_sum`, `images`, and the accumulators'."""
    net = unwrap(model)
    was_training = net.training
    net.eval()
    accs = _accumulators()
    sums = dict.fromkeys(_LOSS_KEYS, 0.0)
    count = 0
    for batch in batches:
        device = net.backbone.mean.device
        images, target, weights = batch_tensors(batch, device)
        x = net.preprocess(images)
        with _autocast(device, bf16):
            output = net(x)
            flipped = net(x.flip(-1)) if config.flip_average else None
        terms = _terms(autosod_loss(output, target, torch.ones_like(weights), config.loss))
        for key in _LOSS_KEYS:
            sums[key] += terms[key] * len(images)
        count += len(images)
        probs = best_query_logits(output).float().sigmoid()
        if config.flip_average:
            probs = (probs + best_query_logits(flipped).float().sigmoid().flip(-1)) / 2
        probs = torch.nn.functional.interpolate(
            probs[:, None], size=target.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0].clamp(0, 1)
        for prob, mask in zip(probs.cpu().numpy(), np.asarray(batch["mask"]), strict=True):
            for acc in accs.values():
                acc.update(prob, mask)
    net.train(was_training)
    state = {f"{k}_sum": np.asarray(v, np.float64) for k, v in sums.items()}
    state["images"] = np.asarray(count, np.int64)
    for name, acc in accs.items():
        state.update({f"{name}.{k}": v for k, v in acc.state().items()})
    return state


def merge_validation_states(states: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Sum the states of several workers (every entry of a state is a sum or a count)."""
    states = list(states)
    if not states:
        raise ValueError("no validation states to merge")
    return {k: sum(np.asarray(s[k]) for s in states) for k in states[0]}


def validation_metrics(state: Mapping[str, np.ndarray]) -> dict[str, float]:
    """`images`, mean `loss` / `bce` / `dice` / `rank`, and `iou`, `max_f`, `mae` of a state."""
    images = int(state["images"])
    if images == 0:
        raise ValueError("the validation state holds no images; is the validation split empty?")
    out: dict[str, float] = {"images": images}
    out.update({k: float(state[f"{k}_sum"]) / images for k in _LOSS_KEYS})
    for name, acc in _accumulators().items():
        prefix = f"{name}."
        acc.load_state({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        metrics = acc.compute()
        out.update({k: metrics[k] for k in ("max_f", "iou", "mae") if k in metrics})
    return out
