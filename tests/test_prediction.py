"""Prediction without Ray: the actor body's stored masks equal the network's own forward pass,
the store reads back through export, evaluate and the training data reader, a rerun has nothing
left to do, the store refuses another checkpoint, and bad checkpoints fail in one line."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
import torch
from conftest import SHARED_DATA
from host_memory_probe import page_faults
from PIL import Image
from prediction_fixtures import SIZE, copy_images, make_run
from typer.testing import CliRunner

from autosod.cli.app import app
from autosod.evaluation.runs import evaluate_source
from autosod.io.decode import read_image, resize_to_input
from autosod.io.manifest import image_id_for
from autosod.io.store.mask_store import MaskStore, StoreConfigMismatchError
from autosod.labeling.prepare import prepare_run
from autosod.labeling.stages import decode_batch, encode_batch, write_batch
from autosod.prediction.config import PredictJobConfig
from autosod.prediction.job import predict_store_config
from autosod.prediction.model_source import resolve_checkpoint
from autosod.prediction.predictor import Predictor, PredictStage
from autosod.store_tools.export import export_store
from autosod.training.checkpoint import load_network
from autosod.training.config import TrainConfig
from autosod.training.data import STORE_COLUMNS, part_rows

COUNT = 5


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny run, five horse images with masks, and their predictions written by the stages
    (decode -> PredictStage -> encode -> writer) into a store, as the job's tasks would."""
    root = tmp_path_factory.mktemp("predict")
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real development data not found at {SHARED_DATA}")
    images = copy_images(SHARED_DATA / "weizmann-horse", root / "horse", COUNT)
    checkpoint = make_run(root / "run")
    config = PredictJobConfig(checkpoint=str(root / "run"), source=str(root / "horse" / "images"),
                              store=str(root / "store"))
    resolved = resolve_checkpoint(config.checkpoint)
    store = MaskStore.open(config.store, config=predict_store_config(config, resolved))
    first = prepare_run(config, store, preflight=False)
    uris = [str(p) for p in images]
    batch = {"image_id": np.array([image_id_for(u) for u in uris], dtype=object),
             "uri": np.array(uris, dtype=object), "shard": np.zeros(COUNT, np.int64)}
    decoded = decode_batch(batch, input_size=resolved.size_px, max_pixels=10**8,
                           storage_options=None)
    stage = PredictStage(resolved.uri, store.config_hash, size_px=resolved.size_px,
                         flip_average=resolved.flip_average, mask_threshold=0.5, device="cpu")
    write_batch(encode_batch(stage(decoded), threshold=0.5), store=store)
    # the same images again with the maps left to the encode task (no device budget)
    low = PredictStage(resolved.uri, store.config_hash, size_px=resolved.size_px,
                       flip_average=True, mask_threshold=0.5, device="cpu", map_budget_bytes=0)
    return {"root": root, "config": config, "resolved": resolved, "checkpoint": checkpoint,
            "images": images, "store": store, "first_todo": first.todo,
            "encoded_low": encode_batch(low(decoded), threshold=0.5)}


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def _direct(checkpoint: Path, uri: str) -> tuple[np.ndarray, float]:
    """The network's own prediction of one image (alone, at its size) and its objectness; the
    image read as every SIZE-px input is (JPEG draft decoding down to at least SIZE px)."""
    net = load_network(checkpoint)
    image = read_image(uri, max_pixels=10**8, min_size_px=SIZE)
    squeezed = resize_to_input(image.rgb, SIZE)[None]
    soft = net.predict(squeezed, [(image.height, image.width)], flip_average=True)[0]
    with torch.no_grad():
        x = net.preprocess(squeezed)
        scores = [net(x).scores[-1], net(x.flip(-1)).scores[-1]]
    objectness = float(np.mean([torch.sigmoid(s.max()).item() for s in scores]))
    return soft, objectness


def test_stored_masks_equal_a_direct_forward_pass(predicted: dict) -> None:
    table = predicted["store"].read().sort_by("uri")
    assert table.num_rows == COUNT and set(table["status"].to_pylist()) == {"ok"}
    for row in table.to_pylist():
        soft, objectness = _direct(predicted["checkpoint"], row["uri"])
        stored_soft = _png(row["saliency_png"]).astype(np.int16)
        stored_mask = _png(row["mask_png"]) > 0
        assert stored_soft.shape == soft.shape == (row["height"], row["width"])
        expected = np.round(soft * 255).astype(np.int16)
        assert np.abs(stored_soft - expected).max() <= 1, row["uri"]
        disagree = (stored_mask != (soft >= 0.5)).mean()
        assert disagree < 1e-3, f"{row['uri']}: {disagree:.2%} of mask pixels differ"
        assert row["objectness"] == pytest.approx(objectness, abs=1e-4)
        assert row["mask_quality"] >= 0 and row["fg_fraction"] == pytest.approx(
            stored_mask.mean(), abs=1e-6)
        assert row["mean_entropy"] is None and row["transport_cost"] is None


def test_a_cpu_predict_stage_keeps_freed_memory(predicted: dict) -> None:
    """As the labelling actor (tests/test_labeling_host_memory.py)."""
    resolved = predicted["resolved"]
    default = page_faults("")
    stage = page_faults(
        "from autosod.prediction.predictor import PredictStage, Predictor\n"
        f"PredictStage({resolved.uri!r}, 'h', size_px={resolved.size_px}, flip_average=True, "
        "mask_threshold=0.5, device='cpu')")
    assert stage < default / 20, (stage, default)


def test_cpu_inference_in_chunks_gives_the_whole_batch_results(predicted: dict) -> None:
    resolved = predicted["resolved"]
    images = np.stack([resize_to_input(read_image(str(p), max_pixels=10**8).rgb,
                                       resolved.size_px) for p in predicted["images"]])
    kwargs = {"size_px": resolved.size_px, "flip_average": True, "mask_threshold": 0.5,
              "device": "cpu"}
    whole = Predictor(resolved.uri, cpu_chunk=COUNT, **kwargs).label_grid(images)
    chunked = Predictor(resolved.uri, cpu_chunk=2, **kwargs).label_grid(images)  # 2 + 2 + 1
    torch.testing.assert_close(chunked.soft, whole.soft, rtol=0, atol=1e-5)
    np.testing.assert_allclose(chunked.objectness, whole.objectness, atol=1e-5)
    np.testing.assert_allclose(chunked.mask_quality, whole.mask_quality, atol=1e-4)
    # the backbone's features tell the images apart, so rows out of order would show here
    assert np.ptp(whole.mask_quality) > 1e-2, whole.mask_quality


def test_maps_upsampled_in_the_encode_task_are_the_same(predicted: dict) -> None:
    table = predicted["store"].read().sort_by("image_id")
    low = predicted["encoded_low"]
    order = np.argsort(low["image_id"])
    for row, index in zip(table.to_pylist(), order, strict=True):
        assert row["image_id"] == low["image_id"][index]
        assert low["saliency_png"][index] == row["saliency_png"]
        assert low["mask_png"][index] == row["mask_png"]


def test_store_reads_through_export_evaluate_and_the_training_reader(predicted: dict) -> None:
    store, root = predicted["store"], predicted["root"]
    result = export_store(store.uri, str(root / "export"))
    assert result.written == COUNT
    stems = sorted(p.stem for p in (root / "export").iterdir())
    assert stems == sorted(p.stem for p in predicted["images"])
    metrics = evaluate_source(store.uri, str(root / "horse"), name="tiny").metrics
    assert metrics["count"] == COUNT and 0 <= metrics["iou"] <= 1 and 0 <= metrics["max_f"] <= 1
    rows = part_rows(store.read(STORE_COLUMNS), store_index=0, config=TrainConfig(),
                     val_fraction=0.0)
    assert len(rows["image_id"]) == COUNT and set(rows["status"]) == {"ok"}
    assert np.all(np.isfinite(rows["weight"])) and np.all(rows["weight"] >= 0)


def test_a_rerun_has_nothing_left_to_do(predicted: dict) -> None:
    assert predicted["first_todo"].num_rows == COUNT
    again = prepare_run(predicted["config"], predicted["store"], preflight=False)
    assert (again.todo.num_rows, again.todo.skipped) == (0, COUNT)
    ids = predicted["store"].read(["image_id"])["image_id"]
    assert pc.count_distinct(ids).as_py() == len(ids) == COUNT


def test_the_store_refuses_another_checkpoint(predicted: dict, tmp_path: Path) -> None:
    other = make_run(tmp_path / "other", steps=4)  # same architecture, other weights
    config = dataclasses.replace(predicted["config"], checkpoint=str(other))
    with pytest.raises(StoreConfigMismatchError, match="checkpoint"):
        MaskStore.open(config.store, config=predict_store_config(
            config, resolve_checkpoint(str(other))))


def test_a_run_resolves_to_its_best_checkpoint_and_settings(predicted: dict) -> None:
    resolved = predicted["resolved"]
    assert resolved.uri == str(predicted["checkpoint"])
    assert (resolved.size_px, resolved.flip_average, resolved.epoch) == (SIZE, True, 1)
    assert resolve_checkpoint(str(predicted["checkpoint"]), size_px=96).size_px == 96


class _Payload:
    def __init__(self) -> None:
        self.weights = torch.zeros(2)


def _bad_checkpoints(root: Path, good: Path) -> dict[str, tuple[Path, str]]:
    truncated = root / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    pickled = root / "pickled.pt"
    torch.save({"format": "autosod-checkpoint", "model": _Payload()}, pickled)
    foreign = root / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    other = root / "other-architecture.pt"
    payload = torch.load(good, weights_only=True)
    payload["model_config"] = payload["model_config"].replace('"queries": 3', '"queries": 5')
    torch.save(payload, other)
    (root / "empty-run").mkdir()
    return {"truncated": (truncated, "truncated or damaged"),
            "pickled": (pickled, "pickled Python objects"),
            "foreign": (foreign, "not an autosod checkpoint"),
            "other architecture": (other, "does not fit its own architecture"),
            "run without checkpoints": (root / "empty-run", "neither best.json")}


def test_bad_checkpoints_fail_in_one_line_before_any_work(predicted: dict,
                                                          tmp_path: Path) -> None:
    runner = CliRunner()
    source = str(predicted["root"] / "horse" / "images")
    for name, (path, words) in _bad_checkpoints(tmp_path, predicted["checkpoint"]).items():
        store = tmp_path / f"store-{name.replace(' ', '-')}"
        result = runner.invoke(app, ["predict", str(path), source, "--store", str(store)])
        assert result.exit_code == 2, f"{name}: {result.output}"
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("autosod predict: error:"), (name, lines)
        assert words in lines[0] and str(path) in lines[0], (name, lines[0])
        assert not store.exists(), f"{name}: the store was created before the check"


def test_init_from_resolves_a_run_and_refuses_another_architecture(tmp_path: Path) -> None:
    """Round 2 of self-training starts from round 1's weights: `--init-from RUN` names the run's
    best checkpoint; a run of another architecture is refused before any work."""
    from prediction_fixtures import TINY

    from autosod.training.job import TrainJobError, _check_init
    from autosod.training.job_config import TrainJobConfig

    checkpoint = make_run(tmp_path / "round1")
    config = TrainJobConfig(stores=("store",), run=str(tmp_path / "round2"), train=TINY,
                            init_from=str(tmp_path / "round1"))
    assert _check_init(config).init_from == str(checkpoint)
    with pytest.raises(TrainJobError, match="another architecture"):
        _check_init(dataclasses.replace(config, train=TrainConfig()))
