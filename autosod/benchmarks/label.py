"""`python jobs/benchmark.py label`: the whole labelling job on N generated images, against two
references measured in the same run on the same device, precision and threads.

- the pipeline: images per second end to end (listing, preflight, Ray start, pipeline) and for
  the pipeline alone, with the share of task time per stage (decode, label, encode, write);
- the single-process loop: read + decode + resize, backbone, head, full-size maps, PNG
  encoding, one batch after the other (`PseudoLabeler`, no Ray), with its phase shares;
  `speedup_vs_single_process` = pipeline rate / this rate;
- forward-only: the backbone alone on the same decoded batches: `speedup_vs_forward_only` =
  pipeline rate / this rate shows how much the head, the I/O and Ray cost on top of the model.

`device="cuda"` runs GPU actors (bf16 autocast and the CuPy head, the GPU defaults) and the
references on the GPU.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autosod.benchmarks.image_folder import write_image_folder
from autosod.io.decode import DEFAULT_MAX_PIXELS
from autosod.io.mask_codec import encode_mask_png, encode_soft_png, unpack_mask
from autosod.labeling.config import LabelerConfig, build_label_config
from autosod.labeling.host_memory import keep_freed_memory
from autosod.labeling.job import run_label_job
from autosod.labeling.labeler import PseudoLabeler, flat_images
from autosod.labeling.stages import decode_batch

__all__ = ["reference_rates", "run_label_benchmark"]

PHASES = ("decode", "forward", "head", "maps", "encode")


def _decode(paths: list[Path], input_size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    batch = {"image_id": np.array([p.name for p in paths], dtype=object),
             "uri": np.array([str(p) for p in paths], dtype=object),
             "shard": np.zeros(len(paths), dtype=np.int32)}
    out = decode_batch(batch, input_size=input_size, max_pixels=DEFAULT_MAX_PIXELS,
                       storage_options=None)
    return out["image"], [(int(h), int(w)) for h, w in zip(out["height"], out["width"],
                                                            strict=True)]


class _Clock:
    """Phase seconds of the single-process loop (synchronising CUDA at each lap)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.seconds[phase] += now - self._last
        self._last = now


def reference_rates(paths: list[Path], labeler: LabelerConfig, batch_size: int,
                    precision: str) -> dict[str, Any]:
    """Images per second of the single-process loop and of the backbone alone (forward-only)
    on `paths`, with one `PseudoLabeler` in this process; first-call costs are excluded. On a
    CPU this process's allocator is set as the CPU actors' is (`keep_freed_memory`)."""
    model = PseudoLabeler(labeler, precision=precision)
    if torch.device(model.device).type == "cpu":
        keep_freed_memory()
    chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    warm, warm_sizes = _decode(chunks[0], labeler.input_size)
    model.full_maps(model.label_grid(warm), warm_sizes)
    clock = _Clock(torch.device(model.device))
    for chunk in chunks:
        images, sizes = _decode(chunk, labeler.input_size)
        clock.lap("decode")
        features = model.features(images)
        clock.lap("forward")
        labels = model.grid_labels(features, flat=flat_images(images))
        clock.lap("head")
        maps = model.full_maps(labels, sizes)
        clock.lap("maps")
        for soft, bits, (_, width) in zip(maps.softs, maps.mask_bits, sizes, strict=True):
            encode_mask_png(unpack_mask(bits, width))
            encode_soft_png(soft)
        clock.lap("encode")
    loop_s = sum(clock.seconds.values())
    decoded = [_decode(chunk, labeler.input_size)[0] for chunk in chunks]
    forward = _Clock(torch.device(model.device))
    for images in decoded:
        model.features(images)
    forward.lap("forward")
    return {
        "single_process_images_per_s": len(paths) / loop_s,
        "single_process_phase_share": {k: v / loop_s for k, v in clock.seconds.items()},
        "forward_only_images_per_s": len(paths) / forward.seconds["forward"],
        "threads": torch.get_num_threads(),
        "device": f"{model.device}{' bf16' if precision == 'bf16' else ''}",
    }


def run_label_benchmark(
    *,
    images: int,
    input_size: int | None,
    batch_size: int,
    actors: int | None,
    actor_cpus: float | None = None,
    device: str = "cpu",
    min_size_px: int = 240,
    max_size_px: int = 480,
    reference_images: int = 64,
    workdir: str | None = None,
) -> dict[str, Any]:
    """Generate `images` JPEG/PNG scenes, run the job into a fresh store, then the references
    on the first `reference_images` of them; return the figures."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=workdir, prefix="autosod-label-bench-") as tmp:
        source, store = Path(tmp) / "images", Path(tmp) / "store"
        paths = write_image_folder(source, images, seed=0, min_size_px=min_size_px,
                                   max_size_px=max_size_px)
        gpu = device.startswith("cuda")
        config = build_label_config(source=str(source), store=str(store),
                                    labeler={"input_size": input_size, "device": device},
                                    batch_size=batch_size, num_actors=actors,
                                    actor_cpus=actor_cpus,
                                    actor_resources="gpu" if gpu else "cpu", progress=False)
        summary = run_label_job(config)
        plan = summary["ray"]
        refs = reference_rates(paths[:reference_images], config.labeler, batch_size,
                               plan["precision"])
    pipeline_rate = summary["pipeline_images_per_s"]
    # images per second of the actors while they label (the pipeline's steady state)
    busy_rate = summary["processed"] * plan["num_actors"] / max(summary["stage_s"]["label"], 1e-9)
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "images": images,
        "image_size_px": [min_size_px, max_size_px],
        "input_size": config.labeler.input_size,
        "batch_size": batch_size,
        "actors": plan["num_actors"],
        "actor_resources": plan["actor_resources"],
        "actor_threads": plan["threads"],
        "precision": plan["precision"],
        "plan": plan["plan"],
        "actor_devices": summary["actor_devices"],
        "counts": summary["counts"],
        "images_per_s_end_to_end": summary["images_per_s"],
        "images_per_s_pipeline": pipeline_rate,
        "wall_s": summary["wall_s"],
        "phase_s": summary["phase_s"],
        "stage_task_s": summary["stage_s"],
        "stage_share": summary["stage_share"],
        # the actors' labelling seconds over their wall seconds in the pipeline: the rest is
        # their start (imports, model) and the wait for the first and last batches
        "actor_busy_share": summary["stage_s"]["label"] / (
            plan["num_actors"] * summary["phase_s"]["pipeline"]),
        "images_per_s_actors_busy": busy_rate,
        "reference_images": min(reference_images, images),
        "reference_device": refs["device"],
        "reference_threads": refs["threads"],
        "reference_single_process_images_per_s": refs["single_process_images_per_s"],
        "reference_single_process_phase_share": refs["single_process_phase_share"],
        "reference_forward_only_images_per_s": refs["forward_only_images_per_s"],
        "speedup_vs_single_process": pipeline_rate / refs["single_process_images_per_s"],
        "speedup_vs_forward_only": pipeline_rate / refs["forward_only_images_per_s"],
        # the actors while busy against the loop: the pipeline's rate without its start and tail
        "steady_speedup_vs_single_process": busy_rate / refs["single_process_images_per_s"],
        "versions": summary["versions"],
    }
