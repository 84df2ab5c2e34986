"""The prediction job on Ray Data: checkpoint + source -> the labelling job's pipeline with a
trained network in the actors -> a store in the labelling store's schema.

Only the actor body differs from labelling (`predictor.PredictStage`); manifest, resume and
exactly-once, decode and encode tasks, the writer and the run summary are
`labeling.job_pipeline.run_store_job`'s. The checkpoint is resolved and loaded on the driver
before Ray starts (`model_source.resolve_checkpoint`); the store records it (URI and SHA-256)
with the prediction settings, so resuming a store with another checkpoint is refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from autosod.labeling.job_pipeline import ActorStage, run_store_job
from autosod.labeling.prepare import PreflightError
from autosod.labeling.resources import ActorPlan
from autosod.labeling.summary import format_summary
from autosod.prediction.config import PredictJobConfig
from autosod.prediction.model_source import (
    CheckpointError,
    ResolvedCheckpoint,
    resolve_checkpoint,
)
from autosod.prediction.predictor import PredictStage

__all__ = ["CheckpointError", "PreflightError", "format_summary", "predict_store_config",
           "run_predict_job"]


def predict_store_config(config: PredictJobConfig, checkpoint: ResolvedCheckpoint,
                         precision: str = "fp32") -> dict[str, Any]:
    """What the store records and hashes: the checkpoint (URI and content hash) and what else
    changes the masks (input size, flip averaging, threshold; bf16 when the actors use it)."""
    recorded: dict[str, Any] = {"prediction": {
        "checkpoint": checkpoint.uri, "checkpoint_sha256": checkpoint.sha256,
        "model_config": checkpoint.model_config, "epoch": checkpoint.epoch,
        "size_px": checkpoint.size_px, "flip_average": checkpoint.flip_average,
        "mask_threshold": config.mask_threshold}}
    if precision == "bf16":
        recorded["precision"] = "bf16"
    return recorded


def run_predict_job(config: PredictJobConfig) -> dict[str, Any]:
    """Run (or resume) prediction; returns the run summary, also saved in the store. Raises
    `CheckpointError` before any work when the checkpoint is unusable."""
    checkpoint = resolve_checkpoint(config.checkpoint, size_px=config.size_px,
                                    flip_average=config.flip_average,
                                    storage_options=config.storage_options)
    config = dataclasses.replace(config, size_px=checkpoint.size_px,
                                 flip_average=checkpoint.flip_average)
    stage = ActorStage(PredictStage, {
        "checkpoint": checkpoint.uri, "size_px": checkpoint.size_px,
        "flip_average": checkpoint.flip_average, "mask_threshold": config.mask_threshold,
        "device": config.device}, threshold=config.mask_threshold)

    def recorded(plan: ActorPlan) -> dict[str, Any]:
        return predict_store_config(config, checkpoint, plan.precision)

    return run_store_job(config, recorded=recorded, stage=stage, check_model=lambda: None,
                         extra={"checkpoint": checkpoint.uri,
                                "checkpoint_sha256": checkpoint.sha256},
                         possible=[predict_store_config(config, checkpoint, precision)
                                   for precision in ("fp32", "bf16")])
