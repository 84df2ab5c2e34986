"""Backbone features of a benchmark folder, computed once and cached, for the quality benchmark.

`extract_feature_set` runs the backbone over `images/` of a benchmark folder (`images/` +
`masks/`, matched by stem) and keeps, per image, the unit features (N, D), the CAMs (C, N), the
original size and the mask's URI. Every variant of the quality benchmark (and every tuning sweep)
then runs on these identical arrays. `save_feature_set` / `load_feature_set` cache them as .npz.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autosod.evaluation.pairing import gt_folder, list_by_stem, match_stems, read_gray
from autosod.io.decode import DEFAULT_MAX_PIXELS, read_image, resize_to_input
from autosod.models.backbones import FeatureExtractor
from autosod.models.config import BackboneConfig

__all__ = ["FeatureSet", "extract_feature_set", "load_feature_set", "save_feature_set"]

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class FeatureSet:
    """One benchmark's backbone outputs: feats (n, N, D) float32 unit rows, cams (n, C, N)
    float32 >= 0, sizes (n, 2) int64 original (H, W), grid (h, w), stems and GT mask URIs."""

    name: str
    feats: np.ndarray
    cams: np.ndarray
    sizes: np.ndarray
    grid: tuple[int, int]
    stems: list[str]
    gt_uris: list[str]
    image_uris: list[str]

    def __len__(self) -> int:
        return len(self.stems)

    def gt(self, index: int) -> np.ndarray:
        """Ground-truth mask of image `index`, (H, W) bool (binarised at > 128)."""
        return read_gray(self.gt_uris[index]) > 128


def _read_rgb(uri: str) -> np.ndarray:
    result = read_image(uri, max_pixels=DEFAULT_MAX_PIXELS)
    if not result.ok:
        raise ValueError(f"cannot read benchmark image {uri!r}: {result.status}: {result.error}")
    return result.rgb


def extract_feature_set(
    benchmark: str,
    backbone: BackboneConfig,
    *,
    limit: int | None = None,
    batch_size: int = 16,
) -> FeatureSet:
    """Backbone features and CAMs of the first `limit` (default all) image/mask pairs."""
    root = benchmark.rstrip("/")
    images = list_by_stem(posixpath.join(root, "images"))
    pairing = match_stems(images, list_by_stem(gt_folder(root)))
    pairs = pairing.pairs[:limit] if limit else pairing.pairs
    if not pairs:
        raise ValueError(
            f"no image/mask pairs in {benchmark!r}; expected images/ and masks/ matched by stem"
        )
    extractor = FeatureExtractor(backbone)
    feats, cams, sizes = [], [], []
    for first in range(0, len(pairs), batch_size):
        rgbs = [_read_rgb(p.pred_uri) for p in pairs[first : first + batch_size]]
        batch = np.stack([resize_to_input(rgb, backbone.input_size) for rgb in rgbs])
        out = extractor(batch)
        feats.append(out.feats.cpu().numpy())
        cams.append(out.cams.cpu().numpy())
        sizes.extend(rgb.shape[:2] for rgb in rgbs)
        grid = out.grid
        logger.info("features of %s: %d / %d images", root, first + len(rgbs), len(pairs))
    return FeatureSet(
        name=posixpath.basename(root),
        feats=np.concatenate(feats).astype(np.float32),
        cams=np.concatenate(cams).astype(np.float32),
        sizes=np.asarray(sizes, dtype=np.int64),
        grid=(int(grid[0]), int(grid[1])),
        stems=[p.stem for p in pairs],
        gt_uris=[p.gt_uri for p in pairs],
        image_uris=[p.pred_uri for p in pairs],
    )


def save_feature_set(features: FeatureSet, path: str | Path) -> Path:
    """Write `features` to an .npz file (no pickled objects) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        name=np.array(features.name),
        feats=features.feats.astype(np.float16),
        cams=features.cams,
        sizes=features.sizes,
        grid=np.asarray(features.grid, dtype=np.int64),
        stems=np.asarray(features.stems),
        gt_uris=np.asarray(features.gt_uris),
        image_uris=np.asarray(features.image_uris),
    )
    return path


def load_feature_set(path: str | Path) -> FeatureSet:
    """Read a file written by `save_feature_set` (features re-normalised to unit rows)."""
    with np.load(path, allow_pickle=False) as data:
        feats = data["feats"].astype(np.float32)
        norm = np.linalg.norm(feats, axis=2, keepdims=True)
        return FeatureSet(
            name=str(data["name"]),
            feats=feats / np.maximum(norm, 1e-12),
            cams=data["cams"].astype(np.float32),
            sizes=data["sizes"].astype(np.int64),
            grid=(int(data["grid"][0]), int(data["grid"][1])),
            stems=[str(s) for s in data["stems"]],
            gt_uris=[str(s) for s in data["gt_uris"]],
            image_uris=[str(s) for s in data["image_uris"]],
        )
