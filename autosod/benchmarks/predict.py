"""`python jobs/benchmark.py predict`: throughput of the prediction job.

Runs `autosod.prediction.job.run_predict_job` on single-node Ray over generated scenes (or the
first images of a given source) with a checkpoint (given, or the `small` preset's network with
its packaged backbone and an untrained decoder: the throughput does not depend on the weights),
and, over the same images, a single-process loop of the same stage bodies (decode ->
`PredictStage` with all cores' threads -> PNG encoding; no Ray, no writer).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autosod.benchmarks.image_folder import write_image_folder
from autosod.io.manifest import image_id_for
from autosod.labeling.stages import decode_batch, encode_batch
from autosod.prediction.config import build_predict_config
from autosod.prediction.job import run_predict_job
from autosod.prediction.model_source import resolve_checkpoint
from autosod.prediction.predictor import PredictStage

__all__ = ["run_predict_benchmark", "single_process_rate", "untrained_checkpoint"]


def untrained_checkpoint(folder: Path, preset_name: str = "small") -> str:
    """A checkpoint of the preset's network (packaged backbone, untrained decoder)."""
    from autosod.models.autosod_net import build_network
    from autosod.training.checkpoint import save_checkpoint
    from autosod.training.config import preset

    train = preset(preset_name)
    path = save_checkpoint(folder / "checkpoint.pt", model=build_network(train.model),
                           metadata={"train": train.to_dict()})
    return str(path)


def single_process_rate(paths: list[str], checkpoint: str, *, batch_size: int,
                        threads: int) -> float:
    """Images per second of decode -> PredictStage -> encode in this process."""
    resolved = resolve_checkpoint(checkpoint)
    stage = PredictStage(resolved.uri, "benchmark", size_px=resolved.size_px,
                         flip_average=resolved.flip_average, mask_threshold=0.5, device="cpu",
                         threads=threads)
    start = time.perf_counter()
    for first in range(0, len(paths), batch_size):
        uris = paths[first : first + batch_size]
        batch = {"image_id": np.array([image_id_for(u) for u in uris], dtype=object),
                 "uri": np.array(uris, dtype=object), "shard": np.zeros(len(uris), np.int64)}
        decoded = decode_batch(batch, input_size=resolved.size_px, max_pixels=10**8,
                               storage_options=None)
        encode_batch(stage(decoded), threshold=0.5)
    return len(paths) / (time.perf_counter() - start)


def run_predict_benchmark(*, checkpoint: str | None = None, source: str | None = None,
                          images: int = 128, batch_size: int = 16, actors: int | None = None,
                          workdir: str | None = None) -> dict[str, Any]:
    """Figures of one prediction run and of the single-process loop over the same images."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=workdir, prefix="autosod-predict-bench-") as tmp:
        root = Path(tmp)
        if checkpoint is None:
            checkpoint = untrained_checkpoint(root)
        if source is None:
            source = str(root / "images")
            write_image_folder(source, images, seed=0, min_size_px=240, max_size_px=480)
        config = build_predict_config(checkpoint=checkpoint, source=source,
                                      store=str(root / "store"), limit=images,
                                      batch_size=batch_size, num_actors=actors,
                                      actor_resources="cpu", progress=False)
        summary = run_predict_job(config)
        from autosod.io.store.mask_store import MaskStore

        uris = MaskStore.open(str(root / "store")).read(["uri"])["uri"].to_pylist()
        single = single_process_rate(sorted(uris), checkpoint, batch_size=batch_size,
                                     threads=os.cpu_count() or 1)
    pipeline_rate = summary["pipeline_images_per_s"]
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "images": summary["processed"],
        "checkpoint": summary["checkpoint"],
        "size_px": summary["config"]["size_px"],
        "flip_average": summary["config"]["flip_average"],
        "batch_size": batch_size,
        "plan": summary["ray"]["plan"],
        "counts": summary["counts"],
        "ray_images_per_s": round(summary["images_per_s"], 3),
        "ray_pipeline_images_per_s": round(pipeline_rate, 3),
        "ray_phase_s": {k: round(v, 2) for k, v in summary["phase_s"].items()},
        "ray_stage_share": {k: round(v, 3) for k, v in summary["stage_share"].items()},
        "single_process_images_per_s": round(single, 3),
        "pipeline_vs_single_process": round(pipeline_rate / single, 3) if single else None,
    }
