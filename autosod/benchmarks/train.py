"""`python jobs/benchmark.py train`: training throughput of the Ray Train job.

Runs the training job (`autosod.training.job.run_train_job`) for a few epochs on given stores,
or on `images` generated scenes labelled in this process first, and reports per epoch the
training images per second (in all and per worker) and the share of step time each worker
spent waiting for its next batch (Ray Data augmentation tasks). Epoch 1 includes the start of
the data pipeline; the steady figures are those of the later epochs. As a reference measured in
the same run, a plain single-process loop of `train_step` on batches already in memory gives
the compute-only rate on this machine.
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
from autosod.io.store.mask_store import MaskStore
from autosod.labeling.actor import LabelStage
from autosod.labeling.config import LabelerConfig
from autosod.labeling.stages import decode_batch, encode_batch, write_batch
from autosod.training.job import run_train_job
from autosod.training.job_config import build_train_config

__all__ = ["label_in_process", "run_train_benchmark", "single_process_rate"]

_LABEL_SIZE = 128
_VAL_FRACTION = 0.1  # a few validation images even from a small generated set


def label_in_process(paths: list[Path], store: Path, batch_size: int = 32) -> str:
    """Label `paths` into a new store with the labelling stages (no Ray); returns its URI."""
    opened = MaskStore.open(str(store), config={"benchmark": "train"})
    labeler = LabelerConfig(input_size=_LABEL_SIZE, device="cpu")
    stage = LabelStage(labeler, "benchmark")
    for start in range(0, len(paths), batch_size):
        uris = [str(p) for p in paths[start : start + batch_size]]
        batch = {"image_id": np.array([image_id_for(u) for u in uris], dtype=object),
                 "uri": np.array(uris, dtype=object),
                 "shard": np.full(len(uris), start // batch_size, np.int64)}
        decoded = decode_batch(batch, input_size=_LABEL_SIZE, max_pixels=10**8,
                               storage_options=None)
        write_batch(encode_batch(stage(decoded), threshold=labeler.potnet.mask_threshold),
                    store=opened)
    return opened.uri


def single_process_rate(config: Any, steps: int, seed: int = 0) -> float:
    """Images per second of `train_step` alone on random in-memory batches (no data loading)."""
    import torch

    from autosod.models.autosod_net import build_network
    from autosod.training.loop import build_optimizer, train_step

    train = config.train
    size, batch = train.model.input_size_px, train.batch_size // config.workers
    rng = np.random.default_rng(seed)
    data = {"image": rng.integers(0, 256, (batch, size, size, 3), np.uint8),
            "mask": rng.integers(0, 256, (batch, size, size), np.uint8),
            "weight": np.ones(batch, np.float32)}
    torch.manual_seed(seed)
    net = build_network(train.model)
    optimizer, scheduler = build_optimizer(net, train, total_steps=steps + 1)
    train_step(net, data, optimizer, scheduler, train)  # first-call costs are not the rate
    start = time.perf_counter()
    for _ in range(steps):
        train_step(net, data, optimizer, scheduler, train)
    return steps * batch / (time.perf_counter() - start)


def _machine() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpus": os.cpu_count(), "gpu": gpu, "torch_threads": torch.get_num_threads(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def run_train_benchmark(
    *,
    stores: list[str] | None,
    images: int,
    epochs: int,
    workers: int,
    gpus: bool,
    preset_name: str,
    batch_size: int | None,
    input_size: int | None,
    reference_steps: int = 10,
    workdir: str | None = None,
) -> dict[str, Any]:
    """Train for `epochs` on the stores (or on generated, labelled images); return the figures."""
    source = list(stores) if stores else f"{images} generated scenes (240-480 px), labelled"
    with tempfile.TemporaryDirectory(dir=workdir, prefix="autosod-train-bench-") as tmp:
        if not stores:
            paths = write_image_folder(Path(tmp) / "images", images, seed=0, min_size_px=240,
                                       max_size_px=480)
            stores = [label_in_process(paths, Path(tmp) / "store")]
        config = build_train_config(
            stores=stores, run=str(Path(tmp) / "runs" / "bench"), preset_name=preset_name,
            model={"input_size_px": input_size},
            train={"epochs": epochs, "batch_size": batch_size}, workers=workers, gpus=gpus,
            val_fraction=_VAL_FRACTION)
        summary = run_train_job(config)
    reference = single_process_rate(config, reference_steps)
    history = summary["history"]
    steady = history[1:] or history
    steady_rate = sum(r["images"] for r in steady) / sum(r["train_s"] for r in steady)
    return {
        **_machine(),
        "stores": source,
        "preset": preset_name, "decoder": config.train.model.decoder,
        "input_size_px": config.train.model.input_size_px,
        "global_batch": config.train.batch_size, "workers": workers, "gpus": gpus,
        "cpus_per_worker": summary["ray"]["cpus_per_worker"],
        "train_images": summary["data"]["train"],
        "per_epoch": [{k: r[k] for k in ("epoch", "steps", "images_per_s", "data_wait_share",
                                         "train_s", "val_s")} for r in history],
        "images_per_s_steady": steady_rate,
        "images_per_s_per_worker_steady": steady_rate / workers,
        "data_wait_share_steady": float(np.mean([r["data_wait_share"] for r in steady])),
        "data_prepare_s": summary["phase_s"].get("data"),
        "wall_s": summary["wall_s"],
        "reference_single_process_images_per_s": reference,
        "versions": summary["versions"],
    }
