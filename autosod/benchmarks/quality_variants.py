"""The variants of the pseudo-mask ablation, each a soft map on the feature grid from the same
features and CAMs (docs/potnet.md, "Ablation switches").

- `cam`: the CAM alone, max_c S_c / max S_c (thresholded at 0.5 by the IoU);
- `ncut`: the TokenCut-style normalised-cut bipartition (`autosod.potnet.ncut`);
- `kmeans`, `spectral`: one branch clusters every pixel, then transport as in the full head;
- `dual_no_transport`: both branches, each pixel takes its nearest prototype's label;
- `potnet`: the full head as configured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autosod.potnet import PotnetConfig, run_head
from autosod.potnet.entropy import normalise_cams
from autosod.potnet.ncut import ncut_bipartition

__all__ = ["VARIANTS", "VariantMaps", "run_variant"]



@dataclass(frozen=True)
class VariantMaps:
    """soft (n, N) float32 in [0, 1] on the feature grid; soft_spread (n,) float32 per image (the
    head's mean |2 s - 1|)."""

    soft: np.ndarray
    soft_spread: np.ndarray


def _spread(soft: np.ndarray) -> np.ndarray:
    return np.abs(2 * soft - 1).mean(axis=1).astype(np.float32)


def _cam(feats: np.ndarray, cams: np.ndarray, config: PotnetConfig) -> VariantMaps:
    soft = normalise_cams(cams).max(axis=1).astype(np.float32)
    return VariantMaps(soft, _spread(soft))


def _ncut(feats: np.ndarray, cams: np.ndarray, config: PotnetConfig) -> VariantMaps:
    soft = ncut_bipartition(feats).astype(np.float32)
    return VariantMaps(soft, _spread(soft))


def _head(**changes: object) -> Callable[[np.ndarray, np.ndarray, PotnetConfig], VariantMaps]:
    def run(feats: np.ndarray, cams: np.ndarray, config: PotnetConfig) -> VariantMaps:
        result = run_head(feats, cams, dataclasses.replace(config, **changes))
        return VariantMaps(np.asarray(result.soft), np.asarray(result.soft_spread))

    return run


VARIANTS: dict[str, Callable[[np.ndarray, np.ndarray, PotnetConfig], VariantMaps]] = {
    "cam": _cam,
    "ncut": _ncut,
    "kmeans": _head(clustering="kmeans", transport=True),
    "spectral": _head(clustering="spectral", transport=True),
    "dual_no_transport": _head(clustering="dual", transport=False),
    "potnet": _head(),
}


def run_variant(
    name: str, feats: np.ndarray, cams: np.ndarray, config: PotnetConfig, *, batch_size: int = 32
) -> VariantMaps:
    """Variant `name` on feats (n, N, D) and cams (n, C, N), in batches -> VariantMaps."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts = [
        VARIANTS[name](feats[i : i + batch_size], cams[i : i + batch_size], config)
        for i in range(0, len(feats), batch_size)
    ]
    return VariantMaps(
        soft=np.concatenate([p.soft for p in parts]),
        soft_spread=np.concatenate([p.soft_spread for p in parts]),
    )
