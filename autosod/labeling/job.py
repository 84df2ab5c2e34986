"""The labelling job on Ray Data: manifest -> decode tasks -> POTNet actor pool -> store writer.

The pipeline and the driver are `job_pipeline.run_store_job` (shared with prediction); this
module says what labelling records in the store and which actor body it runs
(`actor.LabelStage`). The stage bodies are plain callables in `autosod.labeling.stages` and the
math lives in `autosod.potnet` / `autosod.labeling.labeler`. The driver lists the source once
(saved as the store's manifest), skips ids already done (resume = rerun the same command;
`prepare.py` does all of that without Ray), streams the rest through the pipeline from todo
files in the store's scratch folder, and collects only per-batch counts.
"""

from __future__ import annotations

from typing import Any

from autosod.labeling.actor import LabelStage
from autosod.labeling.config import LabelerConfig, LabelJobConfig, labeler_record
from autosod.labeling.job_pipeline import ActorStage, run_store_job, todo_dataset
from autosod.labeling.prepare import PreflightError
from autosod.labeling.resources import ActorPlan
from autosod.labeling.summary import format_summary

__all__ = ["ActorPlan", "PreflightError", "format_summary", "run_label_job", "store_config",
           "todo_dataset"]

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


def run_label_job(config: LabelJobConfig) -> dict[str, Any]:
    """Run (or resume) the labelling job; returns the run summary, also saved in the store."""
    stage = ActorStage(LabelStage, {"labeler": config.labeler},
                       threshold=config.labeler.potnet.mask_threshold)
    return run_store_job(config, recorded=lambda plan: store_config(config, plan.precision),
                         stage=stage,
                         possible=[store_config(config, p) for p in PRECISIONS])
