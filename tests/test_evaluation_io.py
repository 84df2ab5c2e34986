"""Evaluation end to end on real files: benchmark folders, PNG folders, a real mask store,
the JSON report, the plots and the `autosod evaluate` command."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import py_sod_metrics
import pytest
from PIL import Image
from typer.testing import CliRunner

from autosod.evaluation.evaluate import evaluate_folder
from autosod.evaluation.pairing import gt_folder, pair_folders
from autosod.evaluation.report import CONTRACT_KEYS, load_results, write_results
from autosod.evaluation.runs import evaluate_source
from autosod.evaluation.store_source import evaluate_store, is_store
from autosod.evaluation.validate import resize_to
from autosod.store_tools.export import export_store

STEMS = [f"img{i:02d}" for i in range(10)]


def _mask(rng: np.random.Generator) -> np.ndarray:
    height, width = (int(v) for v in rng.integers(20, 70, 2))
    mask = np.zeros((height, width), np.uint8)
    y0, x0 = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
    mask[y0 : y0 + height // 3, x0 : x0 + width // 3] = 255
    return mask


def _soft(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft map at a different size than the mask: the mask, blurred, plus noise."""
    shape = tuple(int(v) for v in rng.integers(20, 70, 2))
    base = resize_to(resize_to(mask, (10, 10)), shape).astype(np.int16)
    return np.clip(base + rng.integers(-50, 50, shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A benchmark folder (images/ + masks/) and a prediction folder missing one mask's
    prediction and holding one extra prediction."""
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(11)
    for sub in ("bench/images", "bench/masks", "preds"):
        (root / sub).mkdir(parents=True)
    softs = {}
    for stem in STEMS:
        mask = _mask(rng)
        Image.fromarray(np.dstack([mask] * 3)).save(root / "bench/images" / f"{stem}.jpg")
        Image.fromarray(mask).save(root / "bench/masks" / f"{stem}.png")
        softs[stem] = _soft(mask, rng)
    for stem in STEMS[1:]:  # STEMS[0] has no prediction
        Image.fromarray(softs[stem]).save(root / "preds" / f"{stem}.png")
    Image.fromarray(softs[STEMS[0]]).save(root / "preds" / "stray.png")
    return {
        "root": root,
        "bench": str(root / "bench"),
        "preds": str(root / "preds"),
        "softs": softs,
    }


def test_pairing_reports_missing_and_extra(benchmark: dict) -> None:
    pairing = pair_folders(benchmark["preds"], benchmark["bench"])
    assert [p.stem for p in pairing.pairs] == STEMS[1:]
    assert pairing.missing == [STEMS[0]] and pairing.extra == ["stray"]
    report = pairing.report()
    assert (report["matched"], report["missing_predictions"], report["extra_predictions"]) == (
        9,
        1,
        1,
    )


def test_gt_folder_accepts_gt_and_rejects_other_layouts(tmp_path: Path) -> None:
    (tmp_path / "a" / "gt").mkdir(parents=True)
    assert gt_folder(str(tmp_path / "a")).endswith("/gt")
    with pytest.raises(FileNotFoundError, match="masks/"):
        gt_folder(str(tmp_path))


def test_folder_matches_pysodmetrics(benchmark: dict) -> None:
    result = evaluate_folder(benchmark["preds"], benchmark["bench"])
    fm, sm, em = py_sod_metrics.MAE(), py_sod_metrics.Smeasure(), py_sod_metrics.Emeasure()
    wfm = py_sod_metrics.WeightedFmeasure()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fmeasure = py_sod_metrics.Fmeasure()
    for stem in STEMS[1:]:
        gt = np.asarray(Image.open(Path(benchmark["bench"]) / "masks" / f"{stem}.png"))
        pred = resize_to(benchmark["softs"][stem], gt.shape)
        for metric in (fm, sm, em, wfm, fmeasure):
            metric.step(pred, gt)
    pr = fmeasure.get_results()["pr"]
    f_curve = 1.3 * pr["p"] * pr["r"] / np.maximum(0.3 * pr["p"] + pr["r"], 1e-12)
    expected = {
        "mae": fm.get_results()["mae"],
        "s_measure": sm.get_results()["sm"],
        "max_e": em.get_results()["em"]["curve"].max(),
        "weighted_f": wfm.get_results()["wfm"],
        "max_f": f_curve.max(),
        "max_f_per_image": fmeasure.get_results()["fm"]["curve"].max(),
    }
    assert result.metrics["count"] == 9
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value, abs=1e-4), name


def _write_store(uri: str, benchmark: dict) -> None:
    from autosod.io.mask_codec import encode_mask_png, encode_soft_png
    from autosod.io.store.mask_store import MaskStore

    store = MaskStore.open(uri, config={"test": "evaluation"})
    rows = []
    for stem in STEMS[1:]:
        soft = benchmark["softs"][stem]
        rows.append({
            "image_id": f"id-{stem}", "uri": f"s3://bucket/images/{stem}.jpg", "status": "ok",
            "width": soft.shape[1], "height": soft.shape[0], "error": "",
            "saliency_png": encode_soft_png(soft), "mask_png": encode_mask_png(soft > 127),
        })  # fmt: skip
    rows.append({"image_id": "id-bad", "uri": "s3://bucket/images/broken.jpg",
                 "status": "decode_error", "error": "truncated"})  # fmt: skip
    store.write_part(rows[:5], shard=0)
    store.write_part(rows[5:], shard=1)


def test_store_and_exported_folder_give_identical_numbers(benchmark: dict, tmp_path: Path) -> None:
    """`autosod evaluate` on a store and on what `autosod export --soft` wrote from it agree."""
    store_uri = str(tmp_path / "store")
    _write_store(store_uri, benchmark)
    assert is_store(store_uri) and not is_store(benchmark["preds"])
    export = tmp_path / "export"
    exported = export_store(store_uri, str(export), soft=True)
    assert (exported.written, exported.skipped_failed, exported.renamed) == (9, 1, 0)
    from_store = evaluate_store(store_uri, benchmark["bench"])
    from_folder = evaluate_source(str(export), benchmark["bench"])
    assert from_store.metrics == from_folder.metrics
    for name, curve in from_store.curves.items():
        assert np.array_equal(curve, from_folder.curves[name]), name
    assert from_store.pairing["matched"] == 9
    assert from_store.pairing["missing_examples"] == [STEMS[0]]
    assert from_store.pairing["failed_examples"] == {"broken": "decode_error"}


def test_json_contract_roundtrip_and_plots(benchmark: dict, tmp_path: Path) -> None:
    from autosod.evaluation.plots import plot_results

    result = evaluate_folder(benchmark["preds"], benchmark["bench"], name="mine")
    path = write_results([result], tmp_path / "m.json")
    data = json.loads(path.read_text())
    assert set(CONTRACT_KEYS) <= set(data), set(CONTRACT_KEYS) - set(data)
    assert len(data["curves"]["precision"]) == 256 and data["name"] == "mine"
    assert max(data["curves"]["f"]) == pytest.approx(data["max_f"], abs=1e-12)
    (loaded,) = load_results(path)
    assert loaded.metrics["max_f"] == result.metrics["max_f"]
    other = evaluate_folder(benchmark["preds"], benchmark["bench"], name="again")
    paths = plot_results([loaded, other], tmp_path / "plots")
    for plot in paths:
        pixels = np.asarray(Image.open(plot).convert("RGB"))
        assert pixels.shape[0] > 300 and pixels.shape[1] > 300, plot
        coloured = (pixels.max(axis=2).astype(int) - pixels.min(axis=2)) > 80
        assert coloured.sum() > 200, f"{plot} shows no coloured curve"


def _cli_args(args: list[str]) -> list[str]:
    return ["evaluate", *args]


def test_cli_evaluate_writes_json_table_and_exit_codes(benchmark: dict, tmp_path: Path) -> None:
    from autosod.cli import app

    runner = CliRunner()
    base = ["--pred", benchmark["preds"], "--gt", benchmark["bench"]]
    out = runner.invoke(app, _cli_args([*base, "--json", str(tmp_path / "m.json")]))
    assert out.exit_code == 0, out.output
    assert "| preds | 9 |" in out.output
    assert json.loads((tmp_path / "m.json").read_text())["count"] == 9
    strict = runner.invoke(app, _cli_args([*base, "--strict"]))
    assert strict.exit_code == 1, strict.output
    bad = runner.invoke(app, _cli_args(["--pred", benchmark["preds"], "--gt", str(tmp_path)]))
    assert bad.exit_code == 2 and "masks/" in bad.output


def test_evaluation_never_imports_torch_or_ray() -> None:
    code = (
        "import sys, autosod.evaluation, autosod.evaluation.runs, autosod.cli.evaluate; "
        "bad = [m for m in ('torch', 'ray') if m in sys.modules]; assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_store_parts_merged_equal_the_streamed_store(benchmark: dict, tmp_path: Path) -> None:
    """What the Ray job's workers compute per part, merged, equals `evaluate_store` exactly."""
    from autosod.evaluation.metrics import SodMetrics
    from autosod.evaluation.pairing import gt_folder, list_by_stem
    from autosod.evaluation.store_source import evaluate_store_parts, merge_part_reports
    from autosod.io.store.mask_store import MaskStore

    store_uri = str(tmp_path / "store")
    _write_store(store_uri, benchmark)
    store = MaskStore.open(store_uri)
    parts = store.parts()
    assert len(parts) == 2
    gts = list_by_stem(gt_folder(benchmark["bench"]))
    metrics, reports = SodMetrics(), []
    for index in range(len(parts)):  # one batch per part, as Ray Data may split them
        batch = {name: np.array([value], dtype=object)
                 for name, value in parts[index].to_item().items()}
        out = evaluate_store_parts(batch, store=store, gts=gts)
        reports.append(json.loads(str(out.pop("pairing_json")[0])))
        metrics.merge(SodMetrics().load_state({k: v[0] for k, v in out.items()}))
    pairing = merge_part_reports(reports, gts)
    streamed = evaluate_store(store_uri, benchmark["bench"])
    assert metrics.compute() == pytest.approx(streamed.metrics, abs=1e-12)
    assert pairing.missing == [STEMS[0]]
    assert pairing.failed == {"broken": "decode_error"}
