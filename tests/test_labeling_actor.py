"""The POTNet actor body on hand-made batches, without a cluster: failures split and bounded,
degenerate images stored as `no_signal` without NaN, masks equal to the single-process labeller's
on real images, wherever the full-size maps are made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from autosod.benchmarks.image_folder import write_image_folder
from autosod.io.mask_codec import encode_mask_png, encode_soft_png
from autosod.io.store.mask_store import MaskStore
from autosod.io.store.schema import SCORE_COLUMNS
from autosod.labeling.actor import MAX_ACTOR_KILLS, LabelStage, LocalAttempts, _batch_key
from autosod.labeling.config import LabelerConfig
from autosod.labeling.labeler import CONSTANT_IMAGE, GridLabels, PseudoLabeler, flat_images
from autosod.labeling.stages import decode_batch, encode_batch, write_batch

SIZE = 96
CONFIG = LabelerConfig(input_size=SIZE, device="cpu")


def _decoded(paths: list, input_size: int = SIZE) -> dict:
    batch = {"image_id": np.array([f"id{i:02d}" for i in range(len(paths))], dtype=object),
             "uri": np.array([str(p) for p in paths], dtype=object),
             "shard": np.zeros(len(paths), dtype=np.int32)}
    return decode_batch(batch, input_size=input_size, max_pixels=10**8, storage_options=None)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_image_folder(tmp_path_factory.mktemp("actor") / "images", 6, seed=11)


@pytest.fixture(scope="module")
def clean(images: list[Path]) -> dict:
    """The encoded output of an actor that never fails (the reference of the tests below)."""
    return encode_batch(LabelStage(CONFIG, "h")(_decoded(images)), threshold=0.5)


class _FailsOn(LabelStage):
    """A labeller whose model raises whenever its batch holds one given image (as a CUDA
    out-of-memory error or a bug triggered by one input would)."""

    def __init__(self, poison: str, **kwargs) -> None:
        super().__init__(CONFIG, "h", **kwargs)
        self.poison, self.calls = poison, []

    def _grid(self, batch: dict, rows: np.ndarray) -> GridLabels:
        uris = [str(batch["uri"][r]) for r in rows]
        self.calls.append(len(rows))
        if any(u.endswith(self.poison) for u in uris):
            raise RuntimeError(f"CUDA out of memory (test: {self.poison} in the batch)")
        return super()._grid(batch, rows)


def test_a_failing_batch_is_split_and_only_the_bad_image_is_marked(
    images: list[Path], clean: dict
) -> None:
    stage = _FailsOn(images[2].name)
    out = encode_batch(stage(_decoded(images)), threshold=0.5)
    assert stage.calls == [6, 1, 1, 1, 1, 1, 1], "whole batch once, then one image at a time"
    assert out["status"].tolist() == ["ok", "ok", "model_error", "ok", "ok", "ok"]
    assert "CUDA out of memory" in out["error"][2]
    for row in (0, 1, 3, 4, 5):
        assert out["mask_png"][row] == clean["mask_png"][row], f"row {row} changed by the split"
    assert out["mask_png"][2] is None and np.isnan(out["mask_quality"][2])


def test_an_image_that_killed_its_actor_is_retried_alone_then_marked(
    images: list[Path], clean: dict
) -> None:
    """An earlier attempt at the batch never ended (its actor died): the retry labels one image
    at a time; the image whose own attempts died MAX_ACTOR_KILLS times is not run again."""
    decoded = _decoded(images)
    attempts = LocalAttempts()
    attempts.begin(_batch_key(decoded["image_id"]))  # the batch's actor died
    for _ in range(MAX_ACTOR_KILLS):
        attempts.begin("image:id04")  # ... and id04 killed it each time it ran alone
    attempts.begin("image:id01")  # id01 was running alone once when the node went away
    stage = _FailsOn("no-such-image", attempts=attempts)
    out = encode_batch(stage(decoded), threshold=0.5)
    assert stage.calls == [1, 1, 1, 1, 1], "one image at a time, the killer image not at all"
    assert out["status"].tolist() == ["ok", "ok", "ok", "ok", "model_error", "ok"]
    assert f"killed the POTNet actor {MAX_ACTOR_KILLS} times" in out["error"][4]
    assert out["mask_png"][1] == clean["mask_png"][1]
    assert attempts.begin("image:id00") == 0, "finished attempts are closed"


def test_degenerate_inputs_are_no_signal_and_no_nan_reaches_the_store(
    images: list[Path], tmp_path: Path
) -> None:
    """Issue 16: each degenerate input of the head (NaN feature, NaN and all-zero CAM, one
    feature everywhere, zero features: no valid prototype) and a constant image give
    `no_signal` rows whose scores are null in the store; the good rows keep finite scores."""

    class _Degenerate(LabelStage):
        def _grid(self, batch: dict, rows: np.ndarray) -> GridLabels:
            pixels = np.ascontiguousarray(batch["image"][rows])
            features = self._labeler.features(pixels)
            feats, cams = features.feats.clone(), features.cams.clone()
            feats[1, 3, 0] = float("nan")
            cams[2, 0, 7] = float("nan")
            cams[3] = 0
            feats[4] = feats[4, :1]
            feats[5] = 0
            return self._labeler.grid_labels(features._replace(feats=feats, cams=cams),
                                             flat=flat_images(pixels))

    decoded = _decoded([*images, images[0]])
    decoded["image"][6] = 77  # a constant picture, through the real backbone
    out = encode_batch(_Degenerate(CONFIG, "h")(decoded), threshold=0.5)
    reasons = ["", "non-finite value in the features or CAMs",
               "non-finite value in the features or CAMs", "all-zero CAM",
               "the same feature at every position", "no valid prototype", CONSTANT_IMAGE]
    assert out["status"].tolist() == ["ok"] + ["no_signal"] * 6
    assert out["error"].tolist() == reasons
    store = MaskStore.open(str(tmp_path / "store"), config={"test": 1})
    write_batch(out, store=store)
    table = MaskStore.open(str(tmp_path / "store")).read()
    ok = pc.equal(table["status"], "ok")
    assert table["objectness"].null_count == 7, "POTNet has no objectness: null in every row"
    for name in (n for n in SCORE_COLUMNS if n != "objectness"):
        column = table[name]
        assert not pc.any(pc.is_nan(column)).as_py(), f"NaN stored in {name}"
        assert column.null_count == 6, f"{name}: failed rows must be null"
        assert pc.all(pc.is_finite(column.filter(ok))).as_py(), f"{name} of the ok row"
    assert table.filter(pc.invert(ok))["mask_png"].null_count == 6


@pytest.mark.parametrize("budget", [64 << 20, 0], ids=["maps-on-actor", "maps-in-encode"])
def test_stored_masks_equal_the_single_process_labeller_on_real_images(
    shared_data: Path, tmp_path: Path, budget: int
) -> None:
    """Issue 17, done-when 3: moving upsampling onto the actor's device (or into the encode
    task) and PNG encoding out of the actor changes no stored byte: the pipeline's stages give
    the mask and soft-map PNGs of `PseudoLabeler.label_images` on the same batch of real images
    (weizmann-horse), to the byte; the scores agree to float32 rounding."""
    paths = sorted((shared_data / "weizmann-horse" / "images").glob("*.jpg"))[:8]
    config = LabelerConfig(device="cpu")  # the default labeller, input 368
    expected = PseudoLabeler(config).label_images(paths, batch_size=len(paths))
    labelled = LabelStage(config, "h", map_budget_bytes=budget)(
        _decoded(paths, config.input_size))
    assert labelled["upsampled"].all() == (budget > 0)
    store = MaskStore.open(str(tmp_path / "store"), config={"test": 1})
    write_batch(encode_batch(labelled, threshold=config.potnet.mask_threshold), store=store)
    rows = {r["uri"]: r for r in MaskStore.open(str(tmp_path / "store")).read().to_pylist()}
    for index, path in enumerate(paths):
        row = rows[str(path)]
        assert row["status"] == "ok", row["error"]
        assert row["mask_png"] == encode_mask_png(expected.masks[index]), path.name
        assert row["saliency_png"] == encode_soft_png(expected.softs[index]), path.name
        assert row["fg_fraction"] == pytest.approx(float(expected.fg_fraction[index]), abs=1e-6)
        assert row["mask_quality"] == pytest.approx(float(expected.mask_quality[index]),
                                                     abs=1e-6)


@pytest.mark.parametrize("width", [1, 7, 8, 9, 333])
def test_packed_masks_round_trip_on_both_packing_paths(width: int) -> None:
    import torch

    from autosod.io.mask_codec import unpack_mask
    from autosod.labeling.maps import _pack_with_torch, pack_mask

    mask = np.random.default_rng(width).random((5, width)) > 0.5
    expected = np.packbits(mask, axis=1)
    np.testing.assert_array_equal(pack_mask(torch.from_numpy(mask)).numpy(), expected)
    np.testing.assert_array_equal(_pack_with_torch(torch.from_numpy(mask)).numpy(), expected)
    np.testing.assert_array_equal(unpack_mask(expected, width), mask)
