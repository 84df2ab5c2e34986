"""Step 6 of docs/potnet.md, and the labelling of step 7: class anchors, prototype masses and
foreground/background labels of prototypes."""

from __future__ import annotations

from typing import Any

from autosod.potnet.kmeans import unit_rows
from autosod.potnet.xp import array_module

__all__ = ["class_anchors", "foreground_prototypes", "prototype_masses"]


Array = Any


def class_anchors(feats: Array, scores: Array) -> Array:
    """Unit feats (B, N, D), scores (B, C + 1, N) (C maps, background last) -> anchors
    (B, C + 1, D), a_c = unit(sum_i S_c(i) f_i)."""
    return unit_rows(scores @ feats)


def prototype_masses(protos: Array, anchors: Array, valid: Array, *, temperature: float) -> Array:
    """protos (B, K, D), anchors (B, C + 1, D), valid (B, K) bool -> masses (B, K) summing to 1.

    nu_j = softmax_j(max_c cos(Q_j, a_c) / t) over the valid prototypes; invalid ones (zero
    prototypes of empty clusters) get mass 0, and an image without a valid prototype all zeros.
    """
    xp = array_module(protos, anchors)
    logits = (protos @ anchors.transpose(0, 2, 1)).max(axis=2) / temperature
    logits = xp.where(valid, logits, -xp.inf)
    top = logits.max(axis=1, keepdims=True)  # -inf only when no prototype is valid
    logits = logits - xp.where(xp.isfinite(top), top, 0)
    masses = xp.where(valid, xp.exp(logits), 0)
    total = masses.sum(axis=1, keepdims=True)  # 0 only when no prototype is valid
    return (masses / xp.where(total > 0, total, 1)).astype(xp.float32)


def foreground_prototypes(protos: Array, anchors: Array) -> Array:
    """protos (B, K, D), anchors (B, C + 1, D) (background last) -> (B, K) bool.

    A prototype is foreground when its cosine to the nearest foreground anchor exceeds its
    cosine to the background anchor.
    """
    cos = protos @ anchors.transpose(0, 2, 1)  # (B, K, C + 1)
    return cos[:, :, :-1].max(axis=2) > cos[:, :, -1]
