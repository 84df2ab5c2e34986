"""Class anchors, similarity-aware masses and prototype labels on hand-made vectors."""

from __future__ import annotations

import numpy as np

from autosod.potnet.fuse import class_anchors, foreground_prototypes, prototype_masses


def test_anchors_are_unit_score_weighted_sums() -> None:
    feats = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=np.float32)
    scores = np.array([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], dtype=np.float32)
    anchors = class_anchors(feats, scores)
    np.testing.assert_allclose(anchors[0], [[0.5**0.5, 0.5**0.5, 0], [0, 0, 1]], atol=1e-6)


def test_masses_are_softmax_of_best_anchor_cosine() -> None:
    e1, e2 = np.eye(2, dtype=np.float32)
    protos = np.stack([e1, e2, (e1 + e2) / np.sqrt(2), np.zeros(2, np.float32)])[None]
    anchors = np.stack([e1, e2])[None]
    valid = np.array([[True, True, True, False]])
    masses = prototype_masses(protos, anchors, valid, temperature=0.1)
    logits = np.array([1.0, 1.0, 1 / np.sqrt(2)]) / 0.1
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(masses[0], [*expected, 0.0], rtol=1e-5)


def test_foreground_label_compares_nearest_fg_anchor_with_background() -> None:
    e1, e2, e3 = np.eye(3, dtype=np.float32)
    anchors = np.stack([e1, e3, e2])[None]  # two foreground classes, background last
    protos = np.stack([e1, e2, 0.8 * e3 + 0.6 * e2, 0.6 * e1 + 0.8 * e2])[None]
    np.testing.assert_array_equal(
        foreground_prototypes(protos, anchors)[0], [True, False, True, False]
    )
