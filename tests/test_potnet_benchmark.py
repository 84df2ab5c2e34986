"""The potnet benchmark's plumbing on a tiny problem (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autosod.benchmarks.potnet import make_benchmark_inputs, run_potnet_benchmark


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_head_and_reference_pipeline_agree_on_benchmark_inputs() -> None:
    # 8 images: with 3, agreement swung from .89 to .98 across seeds (sampling noise)
    rows = run_potnet_benchmark(
        batch=8, positions=[144], dim=32, repeats=1, backend="numpy", seed=0, threads=1
    )
    (row,) = rows
    assert (row["positions"], row["batch"], row["dim"], row["backend"], row["threads"]) == (
        144, 8, 32, "numpy", 1)
    # the speedup is the reference's time over the head's (timings themselves are not asserted)
    ratio = row["reference_ms_per_image"] / row["head_ms_per_image"]
    assert row["speedup"] == pytest.approx(ratio, rel=1e-9), row
    assert row["mask_agreement"] >= 0.9, row


def test_inputs_reject_non_square_sizes() -> None:
    with pytest.raises(ValueError, match="square number"):
        make_benchmark_inputs(batch=1, positions=150, dim=8, seed=0)


@pytest.mark.slow
def test_job_command_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "potnet.json"
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-W", "ignore", str(root / "jobs" / "benchmark.py"), "potnet",
         "--json", str(out), "--batch", "2", "--positions", "64", "--dim", "16",
         "--repeats", "1", "--threads", "1"],
        check=True, capture_output=True, cwd=root, timeout=300,
    )
    (row,) = json.loads(out.read_text())
    assert (row["positions"], row["batch"], row["dim"], row["backend"], row["threads"]) == (
        64, 2, 16, "numpy", 1), row
    ratio = row["reference_ms_per_image"] / row["head_ms_per_image"]
    assert row["speedup"] == pytest.approx(ratio, rel=1e-9), row
