"""`python jobs/benchmark.py evaluate`: evaluation speed and memory on generated pairs.

Writes N mask/soft-map PNG pairs once to a temporary benchmark folder, evaluates them with
`autosod.evaluation` (streaming) and with pysodmetrics (the reference, when installed) in the
same process, and reports pairs/s and resident memory sampled along the way: constant memory
shows as no growth between the first tenth of the pairs and the end.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autosod.evaluation.evaluate import evaluate_pairs, load_pair
from autosod.evaluation.pairing import Pair, pair_folders

__all__ = ["run_evaluate_benchmark", "write_pairs"]

logger = logging.getLogger(__name__)


def _rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_pairs(root: Path, *, count: int, size_px: int, seed: int) -> Path:
    """Write `count` (mask, soft map) pairs of size_px x size_px into root/{masks,preds}."""
    rng = np.random.default_rng(seed)
    (root / "bench" / "masks").mkdir(parents=True)
    (root / "preds").mkdir()
    yy, xx = np.mgrid[0:size_px, 0:size_px]
    for index in range(count):
        cy, cx, ry, rx = rng.uniform(0.25, 0.75, 4) * size_px * [1, 1, 0.5, 0.5]
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        mask = np.where(inside <= 1, 255, 0).astype(np.uint8)
        soft = np.clip(255 * np.exp(-inside) + rng.normal(0, 25, inside.shape), 0, 255)
        Image.fromarray(mask).save(root / "bench" / "masks" / f"p{index:05d}.png")
        Image.fromarray(soft.astype(np.uint8)).save(root / "preds" / f"p{index:05d}.png")
    return root


def _sampled(pairs: list[Pair], samples: dict[int, float]) -> Iterator[tuple]:
    for index, pair in enumerate(pairs, start=1):
        yield load_pair(pair)
        if index == max(1, len(pairs) // 10) or index == len(pairs):
            samples[index] = _rss_mb()


def _time_autosod(pairs: list[Pair]) -> dict[str, Any]:
    samples: dict[int, float] = {}
    start = time.perf_counter()
    metrics = evaluate_pairs(_sampled(pairs, samples))
    seconds = time.perf_counter() - start
    first, last = min(samples), max(samples)
    return {
        "seconds": seconds,
        "pairs_per_s": len(pairs) / seconds,
        "rss_mb_at_10pct": samples[first],
        "rss_mb_at_end": samples[last],
        "rss_growth_mb": samples[last] - samples[first],
        "max_f": metrics.compute()["max_f"],
    }


def _time_reference(pairs: list[Pair]) -> dict[str, Any] | None:
    try:
        import py_sod_metrics
    except ImportError:
        logger.warning("pysodmetrics is not installed; no reference timing")
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iou = py_sod_metrics.IOUHandler(with_dynamic=False, with_adaptive=False, with_binary=True)
        metrics = [py_sod_metrics.Fmeasure(), py_sod_metrics.MAE(), py_sod_metrics.Smeasure(),
                   py_sod_metrics.Emeasure(), py_sod_metrics.WeightedFmeasure(),
                   py_sod_metrics.FmeasureV2({"iou": iou})]  # fmt: skip
    samples: dict[int, float] = {}
    start = time.perf_counter()
    for pred, gt in _sampled(pairs, samples):
        for metric in metrics:
            metric.step(pred, gt)
    seconds = time.perf_counter() - start
    first, last = min(samples), max(samples)
    return {
        "seconds": seconds,
        "pairs_per_s": len(pairs) / seconds,
        "rss_growth_mb": samples[last] - samples[first],
    }


def run_evaluate_benchmark(
    *, pairs: int = 5000, size_px: int = 320, seed: int = 0, reference: bool = True
) -> dict[str, Any]:
    """Generate, then time autosod's evaluation (and pysodmetrics'); returns the figures."""
    if pairs < 10 or size_px < 16:
        raise ValueError(f"need pairs >= 10 and size_px >= 16, got {pairs} and {size_px}")
    with tempfile.TemporaryDirectory(prefix="autosod-evalbench-") as tmp:
        start = time.perf_counter()
        root = write_pairs(Path(tmp), count=pairs, size_px=size_px, seed=seed)
        logger.info("wrote %d pairs in %.1f s", pairs, time.perf_counter() - start)
        matched = pair_folders(str(root / "preds"), str(root / "bench")).pairs
        ours = _time_autosod(matched)
        theirs = _time_reference(matched) if reference else None
    result: dict[str, Any] = {
        "pairs": pairs, "size_px": size_px, "machine": platform.machine(),
        "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
        "autosod": ours, "pysodmetrics": theirs,
    }  # fmt: skip
    if theirs:
        result["speed_ratio_vs_pysodmetrics"] = ours["pairs_per_s"] / theirs["pairs_per_s"]
    return result
