"""The labelling job's pieces without a cluster: config, stage callables on hand-made batches,
run counts, status/export/preview on a store written by the stages, and the shared options."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from autosod.benchmarks.image_folder import CORRUPT_FILES, write_image_folder
from autosod.io.mask_codec import decode_mask_png, decode_soft_png
from autosod.io.store.mask_store import MaskStore
from autosod.labeling.actor import LabelStage
from autosod.labeling.config import LabelerConfig, LabelJobConfig, build_label_config
from autosod.labeling.stages import decode_batch, encode_batch, write_batch
from autosod.labeling.summary import RunCounts, format_summary
from autosod.store_tools.preview import overlay_mask, write_preview
from autosod.store_tools.status import format_status, store_status

SIZE = 96


def test_build_label_config_merges_only_given_options() -> None:
    config = build_label_config(source="imgs", store="st", labeler={"input_size": 160,
                                                                   "weights": None},
                                potnet={"k_low": 3, "eps": None}, batch_size=None, limit=7,
                                endpoint_url="http://127.0.0.1:9")
    assert config.labeler.input_size == 160
    assert config.labeler.weights == LabelerConfig().weights
    assert config.labeler.potnet.k_low == 3
    assert config.labeler.potnet.eps == LabelerConfig().potnet.eps  # not given: the default
    assert config.batch_size == LabelJobConfig(source="a", store="b").batch_size
    assert config.limit == 7
    assert config.storage_options == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}


@pytest.mark.parametrize(("options", "message"), [
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"mode": "append"}, "mode must be one of resume, overwrite, got 'append'"),
    ({"actor_resources": "tpu"}, "actor_resources must be one of auto, gpu, cpu"),
    ({"limit": -3}, "limit must be None or an integer >= 1, got -3"),
])
def test_config_errors_name_the_value(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_label_config(source="imgs", store="st", **options)


def test_unknown_job_option_lists_valid_ones() -> None:
    with pytest.raises(TypeError, match="unknown job options \\['actors_per_gpu'\\]"):
        build_label_config(source="imgs", store="st", actors_per_gpu=2)


def test_storage_secrets_are_redacted_in_summary_config() -> None:
    config = LabelJobConfig(source="s3://b/p", store="s3://b/s",
                            storage_options={"key": "AKIA", "secret": "s3cr3t",
                                             "client_kwargs": {"endpoint_url": "http://x"}})
    shown = config.to_dict()["storage_options"]
    assert shown["key"] == "***" and shown["secret"] == "***"
    assert shown["client_kwargs"]["endpoint_url"] == "http://x"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the three stages by hand on 10 good images, 4 corrupt ones and a missing file."""
    root = tmp_path_factory.mktemp("stages")
    good = write_image_folder(root / "images", 10, seed=5, corrupt=True)
    uris = [str(p) for p in good] + [str(root / "images" / n) for n in CORRUPT_FILES]
    uris.append(str(root / "images" / "missing.jpg"))
    batch = {"image_id": np.array([f"id{i:02d}" for i in range(len(uris))], dtype=object),
             "uri": np.array(uris, dtype=object), "shard": np.array([i % 2 for i in
                                                                     range(len(uris))])}
    decoded = decode_batch(batch, input_size=SIZE, max_pixels=10**8, storage_options=None)
    stage = LabelStage(LabelerConfig(input_size=SIZE, device="cpu"), "cfg-hash")
    labelled = stage(decoded)
    out = encode_batch(labelled, threshold=0.5)
    store = MaskStore.open(str(root / "store"), config={"test": 1})
    counts = write_batch(out, store=store)
    return {"root": root, "good": good, "batch": batch, "decoded": decoded, "stage": stage,
            "labelled": labelled, "out": out, "counts": counts, "store": str(root / "store")}


def test_decode_gives_fixed_shapes_and_a_status_per_row(labelled: dict) -> None:
    decoded = labelled["decoded"]
    assert decoded["image"].shape == (15, SIZE, SIZE, 3) and decoded["image"].dtype == np.uint8
    expected = ["ok"] * 10 + list(CORRUPT_FILES.values()) + ["read_error"]
    assert decoded["status"].tolist() == expected
    with Image.open(labelled["good"][0]) as image:
        assert (decoded["width"][0], decoded["height"][0]) == image.size
    assert not decoded["image"][10:].any(), "failed rows must carry zero images"


def test_label_stage_drops_pixels_and_keeps_failures(labelled: dict) -> None:
    assert "image" not in labelled["labelled"], "decoded pixels must not leave the actor"
    assert labelled["labelled"]["upsampled"][:10].all(), "small maps are made on the device"
    out = labelled["out"]
    assert out["status"].tolist() == labelled["decoded"]["status"].tolist()
    for row in range(10):
        mask = decode_mask_png(out["mask_png"][row])
        soft = decode_soft_png(out["saliency_png"][row])
        assert mask.shape == (out["height"][row], out["width"][row]) == soft.shape
        assert np.array_equal(mask, soft >= 128), "mask must be the thresholded soft map"
    assert all(m is None for m in out["mask_png"][10:])
    assert np.isnan(out["mask_quality"][10:]).all() and np.isfinite(out["mask_quality"][:10]).all()


def test_a_batch_the_model_rejects_becomes_model_error_rows(labelled: dict,
                                                            tmp_path: Path) -> None:
    """A real failure inside the actor: images decoded at 64 px reach a stage built for SIZE,
    and the extractor refuses the batch, then each image alone (the actor splits a failing
    batch). Its ok rows become `model_error` with the exception's message; rows that failed
    earlier keep their reason; the encoder and the writer commit and count them."""
    decoded = decode_batch(labelled["batch"], input_size=64, max_pixels=10**8,
                           storage_options=None)
    out = encode_batch(labelled["stage"](decoded), threshold=0.5)
    assert out["status"].tolist() == (["model_error"] * 10 + list(CORRUPT_FILES.values())
                                      + ["read_error"])
    for error in out["error"][:10]:
        assert error.startswith("ValueError: ") and "got shape (1, 64, 64, 3)" in error, error
    assert all(m is None for m in out["mask_png"]) and np.isnan(out["mask_quality"]).all()
    store = MaskStore.open(str(tmp_path / "store"), config={"test": 1})
    counts = RunCounts()
    counts.update(write_batch(out, store=store))
    assert store.status_counts()["model_error"] == 10 == counts.by_status["model_error"]
    assert "got shape (1, 64, 64, 3)" in counts.errors["model_error"][0]


def test_writer_counts_match_store(labelled: dict) -> None:
    counts = RunCounts()
    counts.update(labelled["counts"])
    store = MaskStore.open(labelled["store"])
    assert dict(counts.by_status) == store.status_counts()
    assert counts.processed == 15 and counts.parts == 1
    parts = store.commits()
    assert len(parts) == 1, "one part per writer batch, whatever its shards"
    assert parts[0].rows == 15 and parts[0].shard == 0, parts[0]
    assert set(counts.errors) == set(CORRUPT_FILES.values()) | {"read_error"}
    assert "missing.jpg" in counts.errors["read_error"][0]


def test_writer_cuts_a_batch_of_large_pngs_into_parts(labelled: dict, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = labelled["out"]
    png_bytes = [len(m or b"") + len(p or b"") for m, p in zip(out["mask_png"],
                                                                out["saliency_png"], strict=True)]
    cap = 3 * max(png_bytes)  # a few rows per part
    monkeypatch.setattr("autosod.labeling.stages.PART_MAX_BYTES", cap)
    store = MaskStore.open(str(tmp_path / "store"), config={"test": 1})
    counts = RunCounts()
    counts.update(write_batch(out, store=store))
    parts = store.commits()
    assert len(parts) == counts.parts > 2 and sum(p.rows for p in parts) == 15
    ids = store.read(["image_id"])["image_id"].to_pylist()
    assert sorted(ids) == sorted(out["image_id"].tolist())
    table = store.read(["image_id", "mask_png", "saliency_png"])
    by_id = {r["image_id"]: len(r["mask_png"] or b"") + len(r["saliency_png"] or b"")
             for r in table.to_pylist()}
    for part in parts:
        rows = store.read_part(next(p for p in store.parts() if p.data == part.data),
                               ["image_id"])["image_id"].to_pylist()
        assert sum(by_id[i] for i in rows) <= cap or len(rows) == 1, (part, rows)


def test_writer_takes_a_batch_whose_rows_all_failed(labelled: dict, tmp_path: Path) -> None:
    """Ray Data hands the writer a column of nulls as float NaN when every row of a batch
    failed (no PNG at all); such a batch is written as failed rows, not as an error."""
    out, failed = labelled["out"], np.arange(10, 15)
    batch = {name: np.asarray(values)[failed] for name, values in out.items()}
    batch["mask_png"] = np.full(5, np.nan, np.float32)
    batch["saliency_png"] = np.full(5, np.nan, np.float32)
    store = MaskStore.open(str(tmp_path / "store"), config={"test": 1})
    write_batch(batch, store=store)
    rows = store.read(["image_id", "status", "mask_png"]).to_pylist()
    assert sorted(r["image_id"] for r in rows) == sorted(out["image_id"][failed].tolist())
    assert all(r["mask_png"] is None and r["status"] != "ok" for r in rows)


def test_run_counts_merge_is_a_sum(labelled: dict) -> None:
    one, two = RunCounts(), RunCounts()
    one.update(labelled["counts"])
    two.update(labelled["counts"])
    two.update(labelled["counts"])
    assert two.processed == 2 * one.processed
    assert two.stage_s["label"] == pytest.approx(2 * one.stage_s["label"])
    text = format_summary({"source": "s", "store": "t", **two.to_dict(), "ray": {}})
    assert "read_error" in text and "processed this run" in text


def test_status_counts_remaining_against_manifest(labelled: dict) -> None:
    from autosod.io.manifest import build_manifest

    store = MaskStore.open(labelled["store"])
    store.save_manifest(build_manifest(str(labelled["root"] / "images")))
    status = store_status(labelled["store"])
    assert status["done"] == 10 and status["failed"]["read_error"] == 1
    # the manifest lists 14 files under other ids than the hand-made ones: all remain
    assert status["remaining"] == 14 and status["manifest_rows"] == 14
    assert "remaining   14 of 14" in format_status(status)


def test_overlay_marks_mask_pixels_only() -> None:
    rgb = np.full((20, 30, 3), 100, dtype=np.uint8)
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:15, 10:20] = True
    out = overlay_mask(rgb, mask)
    assert (out[~mask] == 100).all(), "pixels outside the mask must not change"
    assert (out[10, 15] != 100).any() and out[10, 15, 0] > out[10, 15, 1]
    assert (out[5, 15] == [255, 255, 0]).all(), "the mask border is outlined"


def test_preview_and_cli_on_a_store(labelled: dict, tmp_path: Path) -> None:
    from autosod.cli import app

    result = write_preview(labelled["store"], tmp_path / "pv", max_images=4, max_failed=2)
    assert result.shown_ok == 4 and result.shown_failed == 2
    with Image.open(result.grid_png) as grid:
        assert grid.size[0] > 400
    runner = CliRunner()
    res = runner.invoke(app, ["export", labelled["store"], "--out", str(tmp_path / "ex"),
                              "--soft"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "ex").glob("*.png"))) == 10
    res = runner.invoke(app, ["status", labelled["store"]])
    assert res.exit_code == 0 and "done (ok)   10" in res.output, res.output
    res = runner.invoke(app, ["status", str(tmp_path / "nothing")])
    assert res.exit_code != 0 and "no mask store" in res.output


def test_backbone_and_head_options_reach_the_labeler(tmp_path: Path) -> None:
    """--stages/--top-classes/--split-quantile/--temperature are parsed into the config the
    job runs with; a malformed --stages fails before any work with the value in the message."""
    from autosod.labeling.config import parse_stages

    assert parse_stages("1,2,3") == (1, 2, 3)
    config = build_label_config(source="imgs", store="st",
                                labeler={"stages": parse_stages("2,3"), "top_classes": 4},
                                potnet={"split_quantile": 0.3, "temperature": 0.7})
    assert config.labeler.stages == (2, 3) and config.labeler.top_classes == 4
    assert config.labeler.potnet.split_quantile == 0.3
    assert config.labeler.potnet.temperature == 0.7
    from autosod.cli import app

    res = CliRunner().invoke(app, ["label", str(tmp_path), "--store", str(tmp_path / "s"),
                                   "--stages", "1,x"])
    assert res.exit_code == 2 and "stages must be comma-separated integers" in res.output, (
        res.output)
    assert not (tmp_path / "s").exists(), "a bad option must fail before the store is created"


def test_label_and_job_share_options() -> None:
    import os
    import subprocess
    import sys

    from autosod.cli import app

    cli_help = CliRunner().invoke(app, ["label", "--help"], env={"COLUMNS": "200"}).output
    # the checkout under test (a worktree) rather than the venv's editable install
    pythonpath = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    job_help = subprocess.run([sys.executable, "jobs/label.py", "--help"], capture_output=True,
                              text=True, check=True,
                              env={"COLUMNS": "200", "PATH": "", **pythonpath},
                              cwd=Path(__file__).resolve().parents[1]).stdout
    flags = set(re.findall(r"--[a-z][a-z0-9-]+", cli_help))
    assert {"--store", "--backbone", "--weights", "--input-size", "--batch-size", "--actors",
            "--limit", "--address", "--k-low", "--actors-on", "--endpoint-url", "--stages",
            "--top-classes", "--split-quantile", "--temperature"} <= flags
    assert flags == set(re.findall(r"--[a-z][a-z0-9-]+", job_help))


def test_missing_source_fails_preflight_with_exit_code(tmp_path: Path) -> None:
    from autosod.cli import app

    res = CliRunner().invoke(app, ["label", str(tmp_path / "nope"), "--store",
                                   str(tmp_path / "st"), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "cannot list the source" in res.output


@pytest.mark.gpu
def test_label_stage_on_cuda_uses_bf16_and_cupy(labelled: dict) -> None:
    from conftest import has_gpu

    if not has_gpu():
        pytest.skip("needs a CUDA GPU with CuPy (pip install -e '.[gpu,dev]')")
    stage = LabelStage(LabelerConfig(input_size=SIZE, device="cuda"), "cfg-hash",
                       precision="bf16")
    on_gpu = stage(labelled["decoded"])
    assert on_gpu["upsampled"][:10].all(), "full-size maps are made on the GPU"
    out = encode_batch(on_gpu, threshold=0.5)
    assert out["device"][0].startswith("cuda") and out["device"][0].endswith("bf16")
    cpu = labelled["out"]
    assert out["status"].tolist() == cpu["status"].tolist()
    agree = [np.mean(decode_mask_png(out["mask_png"][r]) == decode_mask_png(cpu["mask_png"][r]))
             for r in range(10)]
    assert np.mean(agree) > 0.8, f"GPU (bf16) and CPU masks disagree: {agree}"


@pytest.mark.slow
def test_gpu_actors_on_a_cpu_machine_use_logical_gpus(tmp_path: Path) -> None:
    """`--actors-on gpu` without a GPU: local Ray starts with logical GPUs, reported as such."""
    from autosod.labeling.job import run_label_job

    write_image_folder(tmp_path / "images", 12, seed=6)
    config = build_label_config(source=str(tmp_path / "images"), store=str(tmp_path / "st"),
                                labeler={"input_size": SIZE}, actor_resources="gpu",
                                batch_size=4, progress=False)
    summary = run_label_job(config)
    assert summary["ray"]["actor_resources"] == "gpu" and summary["ray"]["num_gpus"] == 1.0
    # both: the local Ray was started with one logical GPU, and the summary says so
    assert summary["ray"]["cluster"].get("GPU") == 1.0, summary["ray"]
    assert "1 logical GPU" in summary["ray"]["how"], summary["ray"]
    assert summary["counts"] == {"ok": 12}
    assert summary["ray"]["precision"] == "fp32", "logical GPUs cannot run bf16"
