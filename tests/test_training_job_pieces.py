"""The training job's pieces without a cluster, on a store labelled from real images: store rows
to training rows, the validation split, worker-independent sampling and augmentation, a few
training steps of the small preset, checkpoints and run directories, and the driver's checks
(bad input fails in one line before Ray starts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from training_stores import copy_benchmark, label_folder
from typer.testing import CliRunner

from autosod.cli.app import app
from autosod.io.status import OK, READ_ERROR
from autosod.models.autosod_net import build_network
from autosod.models.net_config import ModelConfig
from autosod.training.checkpoint import save_checkpoint
from autosod.training.collective import all_reduce_sum
from autosod.training.config import preset
from autosod.training.data import (
    BELOW_MIN_QUALITY,
    STORE_COLUMNS,
    decode_pixels,
    is_validation,
    part_rows,
    prepare_rows,
)
from autosod.training.job_config import TrainJobConfig, build_train_config
from autosod.training.loop import build_optimizer, train_step
from autosod.training.runs import (
    BEST_FILE,
    RAY_SNAPSHOT_FILE,
    best_checkpoint,
    latest_checkpoint,
    load_run_network,
)
from autosod.training.sampling import augment_samples, epoch_steps

IMAGES = 12
SIDE = 160


@pytest.fixture(scope="module")
def labelled(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """12 horse images labelled into a store, plus a corrupt file (a failed row)."""
    root = tmp_path_factory.mktemp("train-pieces")
    images = copy_benchmark(shared_data_dir / "weizmann-horse", root / "bench", IMAGES)
    corrupt = root / "bench" / "images" / "zz-corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    store = label_folder([*images, corrupt], root / "store")
    table = store.read(STORE_COLUMNS)
    return {"root": root, "images": images, "store": store, "table": table}


@pytest.fixture(scope="module")
def shared_data_dir() -> Path:
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"real development data not found at {SHARED_DATA}")
    return SHARED_DATA


def _rows(labelled: dict, **train) -> dict[str, np.ndarray]:
    return part_rows(labelled["table"], store_index=0, config=preset("small", **train),
                     val_fraction=0.25)


def test_part_rows_keep_only_ok_rows_and_mark_weak_masks(labelled: dict) -> None:
    statuses = labelled["table"].column("status").to_pylist()
    assert statuses.count(OK) == IMAGES and len(statuses) == IMAGES + 1, statuses
    rows = _rows(labelled)
    assert len(rows["image_id"]) == IMAGES and set(rows["status"]) == {OK}
    quality = np.asarray(labelled["table"].column("mask_quality").to_pylist(), float)[
        np.asarray(statuses) == OK]
    cut = float(np.median(quality))
    weak = _rows(labelled, min_quality=cut)
    expected = np.where(quality >= cut, OK, BELOW_MIN_QUALITY)
    assert weak["status"].tolist() == expected.tolist()
    assert 0 < (weak["status"] == BELOW_MIN_QUALITY).sum() < IMAGES


def test_prepare_rows_count_an_image_that_can_no_longer_be_read(labelled: dict,
                                                                tmp_path: Path) -> None:
    rows = _rows(labelled)
    gone = tmp_path / "gone.jpg"
    rows["uri"] = rows["uri"].copy()
    rows["uri"][3] = str(gone)  # the image moved away after labelling
    out = prepare_rows(rows, side_px=SIDE, max_pixels=10**8)
    assert out["status"][3] == READ_ERROR and "gone.jpg" in out["error"][3], out["error"][3]
    assert out["image"][3] == b""
    ok = [i for i in range(IMAGES) if i != 3]
    assert set(out["status"][ok]) == {OK}
    for i in ok:
        rgb, soft = decode_pixels(out["image"][i], out["mask"][i], out["height"][i],
                                  out["width"][i])
        assert max(rgb.shape[:2]) == SIDE and soft.shape == rgb.shape[:2]
        assert soft.max() > 128 > soft.min(), "the pseudo-mask should hold object and background"


def test_validation_split_depends_on_the_id_only() -> None:
    ids = [f"image-{i}" for i in range(4000)]
    held = is_validation(ids, 0.05)
    assert 0.04 < held.mean() < 0.06, held.mean()
    again = is_validation(ids[::-1], 0.05)[::-1]
    assert np.array_equal(held, again), "the split changed with the order of the ids"
    wider = is_validation(ids, 0.2)
    assert np.all(wider[held]) and wider.sum() > held.sum(), "a larger share must keep the ids"


@pytest.mark.parametrize("world", [2, 4])
def test_workers_share_each_step_of_the_one_worker_schedule(world: int) -> None:
    one = epoch_steps(50, seed=3, epoch=1, batch_size=8, world_size=1, rank=0)
    parts = [epoch_steps(50, seed=3, epoch=1, batch_size=8, world_size=world, rank=r)
             for r in range(world)]
    assert one.shape == (6, 8) and len(np.unique(one)) == 48
    assert np.array_equal(np.concatenate(parts, axis=1), one)
    other_epoch = epoch_steps(50, seed=3, epoch=2, batch_size=8, world_size=1, rank=0)
    assert not np.array_equal(one, other_epoch)


def test_augmentation_depends_on_the_sample_not_its_batch(labelled: dict) -> None:
    out = prepare_rows(_rows(labelled), side_px=SIDE, max_pixels=10**8)
    pairs = [decode_pixels(out["image"][i], out["mask"][i], out["height"][i], out["width"][i])
             for i in range(3)]
    ids = [str(i) for i in out["image_id"][:3]]
    config = preset("small").augment
    together = augment_samples([p[0] for p in pairs], [p[1] for p in pairs], ids, seed=1,
                               epoch=0, size_px=64, config=config)
    alone = augment_samples([pairs[2][0]], [pairs[2][1]], ids[2:], seed=1, epoch=0, size_px=64,
                            config=config)
    assert np.array_equal(together[0][2], alone[0][0])
    assert np.array_equal(together[1][2], alone[1][0])
    later = augment_samples([pairs[2][0]], [pairs[2][1]], ids[2:], seed=1, epoch=1, size_px=64,
                            config=config)
    assert not np.array_equal(later[0][0], alone[0][0]), "every epoch should draw anew"


def test_all_reduce_without_a_process_group_returns_the_state() -> None:
    state = {"a": np.arange(3.0), "n": np.asarray(4, np.int64)}
    out = all_reduce_sum(state)
    assert np.array_equal(out["a"], state["a"]) and int(out["n"]) == 4
    assert out["a"] is not state["a"]


def test_small_preset_learns_from_a_labelled_store_and_checkpoint_loads_weights_only(
        labelled: dict, tmp_path: Path) -> None:
    """A few steps on the store's pseudo-masks: the loss falls, and the checkpoint loads back
    with weights_only=True into a network that predicts the same."""
    out = prepare_rows(_rows(labelled), side_px=SIDE, max_pixels=10**8)
    pairs = [decode_pixels(out["image"][i], out["mask"][i], out["height"][i], out["width"][i])
             for i in range(4)]
    train = preset("small", warmup_steps=0, lr=1e-3, model=ModelConfig(input_size_px=128))
    images, masks = augment_samples([p[0] for p in pairs], [p[1] for p in pairs],
                                    [str(i) for i in out["image_id"][:4]], seed=0, epoch=0,
                                    size_px=128, config=train.augment)
    batch = {"image": images, "mask": masks, "weight": out["weight"][:4]}
    torch.manual_seed(0)
    net = build_network(train.model)
    optimizer, scheduler = build_optimizer(net, train, total_steps=100)
    losses = [train_step(net, batch, optimizer, scheduler, train)["loss"] for _ in range(12)]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    path = tmp_path / "epoch-0001" / "checkpoint.pt"
    path.parent.mkdir()
    save_checkpoint(path, model=net, optimizer=optimizer, scheduler=scheduler, epoch=1, step=12)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["epoch"] == 1 and payload["step"] == 12
    (tmp_path / BEST_FILE).write_text(json.dumps({"checkpoint": "epoch-0001/checkpoint.pt"}))
    assert best_checkpoint(str(tmp_path)) == str(path)
    loaded = load_run_network(str(tmp_path))
    net.eval()
    sizes = [(50, 70)] * 2
    expected = net.predict(images[:2], sizes, flip_average=True)
    got = loaded.predict(images[:2], sizes, flip_average=True)
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(expected, got, strict=True))


def test_runs_without_records_say_what_to_do(tmp_path: Path) -> None:
    assert latest_checkpoint(str(tmp_path)) is None
    with pytest.raises(FileNotFoundError, match=r"no best\.json"):
        best_checkpoint(str(tmp_path))


def test_job_config_refuses_bad_values_with_their_value() -> None:
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        TrainJobConfig(stores=("s",), run="r", workers=0)
    with pytest.raises(ValueError, match=r"batch_size \(8\) must be divisible by workers \(3\)"):
        TrainJobConfig(stores=("s",), run="r", workers=3)
    with pytest.raises(ValueError, match="keep must be an integer >= 2"):
        TrainJobConfig(stores=("s",), run="r", keep=1)
    with pytest.raises(ValueError, match="give at least one store"):
        TrainJobConfig(stores=(), run="r")
    config = build_train_config(stores=["a"], run="s3://b/runs/x/", model={"decoder": "fpn",
                                "weights": None}, train={"epochs": 3, "lr": None},
                                endpoint_url="http://127.0.0.1:9", workers=None)
    assert config.name == "x" and config.train.model.decoder == "fpn"
    assert config.train.epochs == 3 and config.train.lr == preset("small").lr
    assert config.workers == 1
    assert config.to_dict()["storage_options"] == {"endpoint_url": "http://127.0.0.1:9"}


def test_workers_leave_cpu_to_the_data_tasks() -> None:
    from autosod.training.job import worker_cpus

    def cpus(**job) -> float:
        return worker_cpus(TrainJobConfig(stores=("s",), run="r", **job), 2.0)

    assert cpus() == 1.0
    assert cpus(workers=2) == 0.75
    assert cpus(workers=2, gpus=True) == 1.0
    assert cpus(workers=2, cpus_per_worker=0.5) == 0.5


# Bad input: each fails in one line, exit code 2, before Ray starts and before the run changes.

def _train(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["train", *args])
    return result.exit_code, result.output


def _fake_run(run: Path, config: ModelConfig) -> Path:
    """A run directory whose Ray Train record names epoch-0001 as the latest checkpoint."""
    path = run / "epoch-0001" / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint(path, model=build_network(config, pretrained=False), epoch=1, step=5)
    (run / RAY_SNAPSHOT_FILE).write_text(json.dumps(
        {"latest_checkpoint_result": {"checkpoint_dir_name": "epoch-0001"}}))
    return path


def _assert_one_line_error(code: int, output: str, *needles: str) -> None:
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("autosod train: error: "), output
    for needle in needles:
        assert needle in lines[0], output


def test_a_store_without_ok_rows_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff truncated")
    label_folder([bad], tmp_path / "store")
    code, output = _train(str(tmp_path / "store"), "--run", str(tmp_path / "run"))
    _assert_one_line_error(code, output, "has no ok rows", "truncated")
    assert not (tmp_path / "run").exists()


def test_a_missing_store_is_refused(tmp_path: Path) -> None:
    code, output = _train(str(tmp_path / "nowhere"), "--run", str(tmp_path / "run"))
    _assert_one_line_error(code, output, "no mask store", "nowhere")


def test_a_run_of_another_architecture_is_refused(labelled: dict, tmp_path: Path) -> None:
    _fake_run(tmp_path / "run", ModelConfig(decoder="fpn"))
    (tmp_path / "run" / "summary.json").write_text("{}")
    code, output = _train(labelled["store"].uri, "--run", str(tmp_path / "run"))
    _assert_one_line_error(code, output, "another architecture", "decoder")
    assert (tmp_path / "run" / "summary.json").exists(), "a refused rerun changed the run"


def test_a_truncated_checkpoint_is_refused(labelled: dict, tmp_path: Path) -> None:
    path = _fake_run(tmp_path / "run", ModelConfig())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code, output = _train(labelled["store"].uri, "--run", str(tmp_path / "run"))
    _assert_one_line_error(code, output, "truncated or damaged", "epoch-0001")
