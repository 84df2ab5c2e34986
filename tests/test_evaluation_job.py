"""The Ray Data evaluation on a real local Ray cluster gives the numbers of the in-process one."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
from PIL import Image

from autosod.evaluation.evaluate import evaluate_folder
from autosod.evaluation.validate import resize_to


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A single-node Ray cluster started (and shut down) by this process only."""
    temp_dir = tempfile.mkdtemp(prefix="rayev", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow  # starting Ray takes most of a minute on a 2-core machine
def test_ray_job_matches_in_process_evaluation(local_ray: None, tmp_path: Path) -> None:
    from autosod.evaluation.job import EvaluationJobConfig, run_evaluation_job

    rng = np.random.default_rng(2)
    (tmp_path / "bench" / "masks").mkdir(parents=True)
    (tmp_path / "preds").mkdir()
    for index in range(23):
        mask = np.zeros((int(rng.integers(20, 60)), int(rng.integers(20, 60))), np.uint8)
        mask[5:15, 3 : 3 + index % 10 + 1] = 255
        Image.fromarray(mask).save(tmp_path / "bench" / "masks" / f"s{index}.png")
        soft = resize_to(resize_to(mask, (8, 8)), (31, 37))
        Image.fromarray(soft).save(tmp_path / "preds" / f"s{index}.png")
    config = EvaluationJobConfig(pred=str(tmp_path / "preds"), gt=str(tmp_path / "bench"),
                                 batch_size=5)  # fmt: skip
    distributed = run_evaluation_job(config)
    local = evaluate_folder(config.pred, config.gt)
    assert distributed.metrics["count"] == local.metrics["count"] == 23
    for name, value in local.metrics.items():  # merge order changes float sums by ~1e-16
        assert distributed.metrics[name] == pytest.approx(value, abs=1e-12), name
    np.testing.assert_allclose(distributed.curves["f"], local.curves["f"], atol=1e-12)


def test_ray_job_rejects_bad_batch_size() -> None:
    from autosod.evaluation.job import EvaluationJobConfig

    with pytest.raises(ValueError, match="batch_size"):
        EvaluationJobConfig(pred="p", gt="g", batch_size=0)


@pytest.mark.slow
def test_ray_job_reads_a_mask_store_like_the_in_process_evaluation(
    local_ray: None, tmp_path: Path
) -> None:
    from autosod.evaluation.job import EvaluationJobConfig, run_evaluation_job
    from autosod.evaluation.store_source import evaluate_store
    from autosod.io.mask_codec import encode_mask_png, encode_soft_png
    from autosod.io.store.mask_store import MaskStore

    rng = np.random.default_rng(5)
    (tmp_path / "bench" / "masks").mkdir(parents=True)
    store = MaskStore.open(str(tmp_path / "store"), config={"test": "ray-store"})
    for part in range(4):
        rows = []
        for index in range(part * 6, part * 6 + 6):
            mask = np.zeros((40, 48), np.uint8)
            mask[8:30, 5 : 10 + index] = 255
            Image.fromarray(mask).save(tmp_path / "bench" / "masks" / f"s{index}.png")
            soft = np.clip(resize_to(mask, (23, 29)) + rng.integers(-30, 30, (23, 29)), 0, 255)
            rows.append({"image_id": f"i{index}", "uri": f"/data/s{index}.jpg", "status": "ok",
                         "saliency_png": encode_soft_png(soft.astype(np.uint8)),
                         "mask_png": encode_mask_png(soft > 127)})  # fmt: skip
        store.write_part(rows, shard=part)
    blank = encode_soft_png(np.zeros((23, 29), np.uint8))  # a newer copy of two ids: their
    store.write_part([{"image_id": i, "uri": f"/data/s{i[1:]}.jpg", "status": "ok",  # parts
                       "saliency_png": blank, "mask_png": encode_mask_png(np.zeros((23, 29),
                                                                                bool))}
                      for i in ("i3", "i9")], shard=0)  # are read keeping only the others
    assert sum(part.keep is not None for part in store.parts()) == 2
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "bench" / "masks" / "lost.png")
    config = EvaluationJobConfig(pred=store.uri, gt=str(tmp_path / "bench"), batch_size=16)
    distributed = run_evaluation_job(config)
    local = evaluate_store(config.pred, config.gt)
    assert distributed.metrics["count"] == local.metrics["count"] == 24
    for name, value in local.metrics.items():
        assert distributed.metrics[name] == pytest.approx(value, abs=1e-12), name
    assert distributed.pairing["missing_examples"] == ["lost"]
    assert distributed.pairing["matched"] == 24
