"""The metric accumulators against pysodmetrics (the reference) on random pairs of mixed sizes."""

from __future__ import annotations

import warnings

import numpy as np
import py_sod_metrics
import pytest

from autosod.evaluation import (
    FmeasureAccumulator,
    IouAccumulator,
    SodMetrics,
    resize_to,
    validate_pair,
)

TOL = 1e-4


def _random_pairs(seed: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """uint8 predictions at their own size and uint8 GT masks, with the edge cases mixed in."""
    rng = np.random.default_rng(seed)
    pairs = []
    for index in range(count):
        height, width = (int(v) for v in rng.integers(6, 90, 2))
        gt = np.zeros((height, width), np.uint8)
        kind = index % 7
        if kind == 1:
            gt[:] = 255  # all foreground
        elif kind >= 2:  # a rectangle, sometimes one pixel, sometimes on the image border
            # (not within the last two rows or columns: see test_s_measure_of_object_in_last_column)
            y0, x0 = int(rng.integers(0, height - 2)), int(rng.integers(0, width - 2))
            gt[y0 : y0 + int(rng.integers(1, height)), x0 : x0 + int(rng.integers(1, width))] = 255
        pred_shape = tuple(int(v) for v in rng.integers(6, 90, 2))
        if kind == 3:  # an informative prediction: the GT, blurred by resizing, plus noise
            base = resize_to(resize_to(gt, (12, 12)), pred_shape).astype(np.int16)
            pred = np.clip(base + rng.integers(-60, 60, pred_shape), 0, 255).astype(np.uint8)
        elif kind == 4:
            pred = np.full(pred_shape, int(rng.integers(0, 256)), np.uint8)  # constant
        elif kind == 5:
            pred = np.zeros(pred_shape, np.uint8)
        else:
            pred = rng.integers(0, 256, pred_shape, dtype=np.uint8)
        pairs.append((resize_to(pred, gt.shape), gt))
    return pairs


def _f_from_pr(precision: np.ndarray, recall: np.ndarray, beta2: float) -> np.ndarray:
    numerator = (1 + beta2) * precision * recall
    denominator = np.where(numerator == 0, 1.0, beta2 * precision + recall)
    return np.where(numerator == 0, 0.0, numerator / denominator)


def _reference(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float | np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = py_sod_metrics.Fmeasure()
    em, sm = py_sod_metrics.Emeasure(), py_sod_metrics.Smeasure()
    wfm, mae = py_sod_metrics.WeightedFmeasure(), py_sod_metrics.MAE()
    iou_handler = py_sod_metrics.IOUHandler(
        with_dynamic=False, with_adaptive=False, with_binary=True, sample_based=True
    )
    binary = py_sod_metrics.FmeasureV2({"iou": iou_handler})
    for pred, gt in pairs:
        for metric in (fm, em, sm, wfm, mae, binary):
            metric.step(pred, gt)
    f_results, e_results = fm.get_results(), em.get_results()["em"]
    precision, recall = f_results["pr"]["p"], f_results["pr"]["r"]
    f_curve = _f_from_pr(precision, recall, 0.3)
    return {
        "max_f": f_curve.max(),
        "mean_f": f_curve.mean(),
        "adaptive_f": f_results["fm"]["adp"],
        "max_f_per_image": f_results["fm"]["curve"].max(),
        "mean_f_per_image": f_results["fm"]["curve"].mean(),
        "mae": mae.get_results()["mae"],
        "s_measure": sm.get_results()["sm"],
        "max_e": e_results["curve"].max(),
        "mean_e": e_results["curve"].mean(),
        "adaptive_e": e_results["adp"],
        "weighted_f": wfm.get_results()["wfm"],
        "iou": binary.get_results()["iou"]["binary"],
        # pysodmetrics orders curves from threshold 255 down to 0; ours go up
        "precision": precision[::-1],
        "recall": recall[::-1],
        "f_per_image": f_results["fm"]["curve"][::-1],
        "e": e_results["curve"][::-1],
    }


@pytest.fixture(scope="module")
def pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    return _random_pairs(seed=7, count=48)


@pytest.fixture(scope="module")
def reference(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    return _reference(pairs)


@pytest.fixture(scope="module")
def metrics(pairs: list[tuple[np.ndarray, np.ndarray]]) -> SodMetrics:
    accumulator = SodMetrics()
    for pred, gt in pairs:
        accumulator.update(pred, gt)
    return accumulator


SCALARS = [
    "max_f", "mean_f", "adaptive_f", "max_f_per_image", "mean_f_per_image", "mae", "s_measure",
    "max_e", "mean_e", "adaptive_e", "weighted_f", "iou",
]  # fmt: skip


@pytest.mark.parametrize("name", SCALARS)
def test_scalar_matches_pysodmetrics(name: str, metrics: SodMetrics, reference: dict) -> None:
    ours = metrics.compute()[name]
    assert ours == pytest.approx(reference[name], abs=TOL), f"{name}: {ours} vs {reference[name]}"


@pytest.mark.parametrize("name", ["precision", "recall", "f_per_image", "e"])
def test_curves_match_pysodmetrics(name: str, metrics: SodMetrics, reference: dict) -> None:
    ours = metrics.curves()[name]
    assert ours.shape == (256,)
    np.testing.assert_allclose(ours, reference[name], atol=TOL, err_msg=name)


def test_max_f_uses_mean_pr_curves_not_mean_f_curve(metrics: SodMetrics) -> None:
    result, curves = metrics.compute(), metrics.curves()
    expected = _f_from_pr(curves["precision"], curves["recall"], 0.3).max()
    assert result["max_f"] == pytest.approx(expected, abs=1e-12)
    assert result["max_f"] >= result["max_f_per_image"] - 1e-12  # F is concave-ish in (P, R)
    assert result["count"] == 48


def test_merge_of_shards_equals_one_pass(pairs: list, metrics: SodMetrics) -> None:
    shards = [SodMetrics() for _ in range(3)]
    for index, (pred, gt) in enumerate(pairs):
        shards[index % 3].update(pred, gt)
    merged = SodMetrics()
    for shard in shards:
        merged.merge(SodMetrics().load_state(shard.state()))
    one_pass = metrics.compute()
    for name, value in merged.compute().items():
        assert value == pytest.approx(one_pass[name], abs=1e-12), name


def test_state_is_fixed_size(pairs: list) -> None:
    accumulator = SodMetrics()
    accumulator.update(*pairs[0])
    sizes = {k: v.size for k, v in accumulator.state().items()}
    for pred, gt in pairs[1:]:
        accumulator.update(pred, gt)
    assert {k: v.size for k, v in accumulator.state().items()} == sizes


def test_float_and_bool_inputs_match_pysodmetrics_unnormalized() -> None:
    rng = np.random.default_rng(3)
    gt = np.zeros((40, 50), bool)
    gt[10:30, 5:25] = True
    pred = rng.random((40, 50))
    ours = SodMetrics()
    ours.update(pred, gt)
    mae = py_sod_metrics.MAE()
    mae.step(pred, gt, normalize=False)
    sm = py_sod_metrics.Smeasure()
    sm.step(pred, gt, normalize=False)
    result = ours.compute()
    assert result["mae"] == pytest.approx(mae.get_results()["mae"], abs=TOL)
    assert result["s_measure"] == pytest.approx(sm.get_results()["sm"], abs=TOL)


def test_s_measure_of_object_in_last_column() -> None:
    """pysodmetrics (like the MATLAB original) gives NaN when the GT centroid lies in the last
    column: a right block of zero width. We drop zero-area blocks (their weight is 0)."""
    rng = np.random.default_rng(5)
    gt = np.zeros((20, 16), bool)
    gt[4:9, 15] = True
    pred = rng.random((20, 16))
    reference = py_sod_metrics.Smeasure()
    blocks = [(slice(0, 7), slice(0, 16)), (slice(7, 20), slice(0, 16))]  # centroid row 6 -> 7
    region = sum(
        pred[ys, xs].size / pred.size * reference.ssim(pred[ys, xs], gt[ys, xs])
        for ys, xs in blocks
    )
    expected = 0.5 * reference.object(pred, gt) + 0.5 * region
    ours = SodMetrics()
    ours.update(pred, gt)
    assert ours.compute()["s_measure"] == pytest.approx(expected, abs=1e-9)


def test_perfect_prediction_scores_one() -> None:
    gt = np.zeros((32, 32), np.uint8)
    gt[8:20, 4:30] = 255
    accumulator = SodMetrics()
    accumulator.update(gt.copy(), gt)
    result = accumulator.compute()
    for name in ("max_f", "adaptive_f", "s_measure", "iou", "weighted_f"):
        assert result[name] == pytest.approx(1.0, abs=1e-6), name
    # E sums the enhanced alignment (1 per pixel here) and divides by N - 1, as the reference does
    assert result["max_e"] == pytest.approx(gt.size / (gt.size - 1), abs=1e-9)
    assert result["mae"] == 0.0


def test_validate_pair_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="resize"):
        validate_pair(np.zeros((4, 5), np.uint8), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        validate_pair(np.full((4, 4), 1.5), np.zeros((4, 4), bool))
    with pytest.raises(TypeError, match="int32"):
        validate_pair(np.zeros((4, 4), np.int32), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="2-D"):
        validate_pair(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8))


def test_merge_refuses_other_settings_and_empty_compute() -> None:
    with pytest.raises(TypeError, match="beta2"):
        FmeasureAccumulator(beta2=0.3).merge(FmeasureAccumulator(beta2=1.0))
    with pytest.raises(ValueError, match="no images"):
        IouAccumulator().compute()


def test_resize_to_matches_pillow_size_and_keeps_same_size() -> None:
    pred = np.arange(20 * 30, dtype=np.uint32).reshape(20, 30).astype(np.uint8)
    assert resize_to(pred, (20, 30)) is pred
    resized = resize_to(pred, (41, 17))
    assert resized.shape == (41, 17) and resized.dtype == np.uint8
    constant = resize_to(np.full((5, 7), 200, np.uint8), (50, 70))
    assert np.all(constant == 200)
