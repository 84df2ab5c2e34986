"""`python jobs/benchmark.py label`: the whole labelling job on N generated images.

Reports images per second end to end (listing, preflight, Ray start, pipeline) and for the
pipeline alone, the share of task time per stage (decode, label, write), and as the reference
measured in the same run, a single-process loop over the same images (`PseudoLabeler` with
decode and PNG encoding, no Ray): `speedup_vs_single_process` is pipeline rate / that rate.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from autosod.benchmarks.image_folder import write_image_folder
from autosod.io.decode import DEFAULT_MAX_PIXELS, read_image, resize_to_input
from autosod.io.mask_codec import encode_mask_png, encode_soft_png
from autosod.labeling.config import LabelerConfig, build_label_config
from autosod.labeling.job import run_label_job
from autosod.labeling.labeler import PseudoLabeler

__all__ = ["run_label_benchmark", "single_process_rate"]



def single_process_rate(paths: list[Path], labeler: LabelerConfig, batch_size: int) -> float:
    """Images per second of a plain loop: read + decode + resize, label, encode PNGs."""
    model = PseudoLabeler(labeler)
    warm = np.zeros((1, labeler.input_size, labeler.input_size, 3), dtype=np.uint8)
    model.label_batch(warm, [(8, 8)])  # first-call costs are not part of the rate
    start = time.perf_counter()
    for offset in range(0, len(paths), batch_size):
        rgbs = [read_image(str(p), max_pixels=DEFAULT_MAX_PIXELS).rgb
                for p in paths[offset:offset + batch_size]]
        batch = np.stack([resize_to_input(rgb, labeler.input_size) for rgb in rgbs])
        result = model.label_batch(batch, [rgb.shape[:2] for rgb in rgbs])
        for mask, soft in zip(result.masks, result.softs, strict=True):
            encode_mask_png(mask)
            encode_soft_png(soft)
    return len(paths) / (time.perf_counter() - start)


def run_label_benchmark(
    *,
    images: int,
    input_size: int,
    batch_size: int,
    actors: int | None,
    min_size_px: int = 240,
    max_size_px: int = 480,
    reference_images: int = 64,
    workdir: str | None = None,
) -> dict[str, Any]:
    """Generate `images` JPEG/PNG scenes, run the job into a fresh store, return the figures."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="autosod-label-bench-") as tmp:
        source, store = Path(tmp) / "images", Path(tmp) / "store"
        paths = write_image_folder(source, images, seed=0, min_size_px=min_size_px,
                                   max_size_px=max_size_px)
        config = build_label_config(source=str(source), store=str(store),
                                    labeler={"input_size": input_size}, batch_size=batch_size,
                                    num_actors=actors, progress=False)
        summary = run_label_job(config)
        reference = single_process_rate(paths[:reference_images], config.labeler, batch_size)
    pipeline_rate = summary["pipeline_images_per_s"]
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "images": images,
        "image_size_px": [min_size_px, max_size_px],
        "input_size": input_size,
        "batch_size": batch_size,
        "actors": summary["ray"]["num_actors"],
        "actor_resources": summary["ray"]["actor_resources"],
        "actor_devices": summary["actor_devices"],
        "counts": summary["counts"],
        "images_per_s_end_to_end": summary["images_per_s"],
        "images_per_s_pipeline": pipeline_rate,
        "wall_s": summary["wall_s"],
        "phase_s": summary["phase_s"],
        "stage_task_s": summary["stage_s"],
        "stage_share": summary["stage_share"],
        "reference_single_process_images_per_s": reference,
        "speedup_vs_single_process": pipeline_rate / reference if reference else None,
        "versions": summary["versions"],
    }
