"""CAM normalisation, probabilities, entropy and the split, on hand-made maps."""

from __future__ import annotations

import math

import numpy as np

from autosod.potnet.entropy import (
    class_probabilities,
    class_scores,
    entropy,
    entropy_split,
    normalise_cams,
)


def test_normalise_divides_by_spatial_max_and_clips_negatives() -> None:
    cams = np.array([[[2.0, 1.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]], dtype=np.float32)
    out = normalise_cams(cams)
    np.testing.assert_array_equal(out, [[[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    assert out.dtype == np.float32


def test_probabilities_and_entropy_match_hand_computation() -> None:
    # One class, four pixels: S = 1, 0.5, 0.25, 0 -> S_bg = 0, 0.5, 0.75, 1.
    cams = np.array([[[1.0, 0.5, 0.25, 0.0]]], dtype=np.float32)
    scores = class_scores(normalise_cams(cams))
    np.testing.assert_allclose(scores[0], [[1, 0.5, 0.25, 0], [0, 0.5, 0.75, 1]])
    probs = class_probabilities(scores)
    eta = entropy(probs)
    expected_mid = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / math.log(2)
    np.testing.assert_allclose(eta[0], [0.0, 1.0, expected_mid, 0.0], atol=1e-6)


def test_two_classes_entropy_is_normalised_by_log3() -> None:
    # S_1 = S_2 = 0.5 -> S_bg = 0.5: uniform over 3 classes, entropy exactly 1.
    cams = np.array([[[1.0, 0.5], [1.0, 0.5]]], dtype=np.float32)
    probs = class_probabilities(class_scores(normalise_cams(cams)))
    np.testing.assert_allclose(probs[0, :, 1], [1 / 3, 1 / 3, 1 / 3], atol=1e-6)
    assert abs(entropy(probs)[0, 1] - 1.0) < 1e-6


def test_split_equals_quantile_rule_for_distinct_entropies() -> None:
    rng = np.random.default_rng(0)
    eta = rng.random((3, 101)).astype(np.float32)
    for quantile in (0.3, 0.5, 0.8):
        low, high = entropy_split(eta, np.ones_like(eta), quantile=quantile, tau=0.0)
        threshold = np.quantile(eta.astype(np.float64), quantile, axis=1, keepdims=True)
        np.testing.assert_array_equal(high, (eta >= threshold).astype(np.float32))
        np.testing.assert_array_equal(low + high, np.ones_like(eta))


def test_split_excludes_pixels_below_tau_and_keeps_both_branches() -> None:
    eta = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], dtype=np.float32)
    max_prob = np.array([[0.9, 0.3, 0.9, 0.9, 0.3, 0.9]], dtype=np.float32)
    low, high = entropy_split(eta, max_prob, quantile=0.5, tau=0.5)
    # Eligible: 0.1, 0.3, 0.4, 0.6 -> ceil(0.5 * 3) = 2 lowest go to k-means.
    np.testing.assert_array_equal(low[0], [1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(high[0], [0, 0, 0, 1, 0, 1])
    ties = np.full((1, 5), 0.7, dtype=np.float32)
    low, high = entropy_split(ties, np.ones_like(ties), quantile=0.5, tau=0.0)
    assert low.sum() == 2 and high.sum() == 3, "equal entropies must still fill both branches"
