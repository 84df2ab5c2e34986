"""Pairing predictions with benchmark ground truth by file stem, reporting what does not match.

A benchmark folder holds `images/` and `masks/` (or `gt/`) side by side; masks are matched to
predictions by file stem. Predictions come as a folder of PNGs named `<stem>.png` or as a mask
store (`autosod.evaluation.store_source`). Local paths and `s3://` URIs both work.
"""

from __future__ import annotations

import io
import logging
import posixpath
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from autosod.io.filesystem import file_stem, open_filesystem, read_bytes

__all__ = [
    "IMAGE_SUFFIXES",
    "Pair",
    "Pairing",
    "decode_gray",
    "gt_folder",
    "list_by_stem",
    "match_stems",
    "pair_folders",
    "read_gray",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GT_SUBDIRS = ("masks", "gt")
_MAX_EXAMPLES = 20


@dataclass(frozen=True)
class Pair:
    """One prediction file and its ground-truth mask, both URIs or local paths."""

    stem: str
    pred_uri: str
    gt_uri: str


@dataclass(frozen=True)
class Pairing:
    """What matched and what did not.

    `missing`: GT stems without a prediction; `extra`: predictions without a GT mask;
    `failed`: predictions that exist but failed (stem -> status, from a store).
    """

    pairs: list[Pair]
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """Counts and up to 20 example stems of each kind, for the metrics JSON."""
        return {
            "matched": len(self.pairs),
            "missing_predictions": len(self.missing),
            "extra_predictions": len(self.extra),
            "failed_predictions": len(self.failed),
            "missing_examples": sorted(self.missing)[:_MAX_EXAMPLES],
            "extra_examples": sorted(self.extra)[:_MAX_EXAMPLES],
            "failed_examples": dict(sorted(self.failed.items())[:_MAX_EXAMPLES]),
        }

    def log(self) -> None:
        """Warn about every kind of mismatch (with examples); nothing is dropped silently."""
        report = self.report()
        for kind in ("missing", "extra", "failed"):
            if report[f"{kind}_predictions"]:
                logger.warning(
                    "%d %s predictions, e.g. %s",
                    report[f"{kind}_predictions"],
                    kind,
                    report[f"{kind}_examples"],
                )


def list_by_stem(folder: str, storage_options: dict | None = None) -> dict[str, str]:
    """{stem: uri} of the image files directly inside `folder` (local path or s3:// URI)."""
    fs, path = open_filesystem(folder, storage_options)
    if not fs.isdir(path):
        raise FileNotFoundError(f"folder {folder!r} does not exist; give a folder of images")
    prefix = folder.split("://", 1)[0] + "://" if "://" in folder else ""
    found: dict[str, str] = {}
    for entry in sorted(fs.ls(path, detail=False)):
        name = posixpath.basename(entry.rstrip("/"))
        stem, suffix = file_stem(name), posixpath.splitext(name)[1]
        if suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
            continue
        if stem in found:
            raise ValueError(
                f"two files share the stem {stem!r} in {folder!r} ({found[stem]!r} and "
                f"{entry!r}); keep one file per stem"
            )
        found[stem] = entry if not prefix or "://" in entry else prefix + entry
    return found


def gt_folder(benchmark: str, storage_options: dict | None = None) -> str:
    """The masks folder of a benchmark folder: `<benchmark>/masks` or `<benchmark>/gt`."""
    fs, path = open_filesystem(benchmark, storage_options)
    for name in GT_SUBDIRS:
        if fs.isdir(posixpath.join(path, name)):
            return posixpath.join(benchmark.rstrip("/"), name)
    raise FileNotFoundError(
        f"benchmark folder {benchmark!r} has neither masks/ nor gt/; lay it out as images/ and "
        "masks/ side by side, masks named like the images"
    )


def match_stems(preds: dict[str, str], gts: dict[str, str]) -> Pairing:
    """Pairs for stems present on both sides, and the stems present on one side only."""
    pairs = [Pair(stem, preds[stem], gts[stem]) for stem in sorted(gts) if stem in preds]
    missing = sorted(stem for stem in gts if stem not in preds)
    extra = sorted(stem for stem in preds if stem not in gts)
    return Pairing(pairs=pairs, missing=missing, extra=extra)


def pair_folders(pred_dir: str, benchmark: str, storage_options: dict | None = None) -> Pairing:
    """Match a folder of prediction images with a benchmark folder's masks by stem."""
    gts = list_by_stem(gt_folder(benchmark, storage_options), storage_options)
    if not gts:
        raise ValueError(f"no mask images found in the benchmark folder {benchmark!r}")
    return match_stems(list_by_stem(pred_dir, storage_options), gts)


def decode_gray(data: bytes, what: str) -> np.ndarray:
    """Image bytes -> (H, W) uint8 grayscale; colour images are converted with Pillow's 'L'."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except Exception as error:  # Pillow raises several types for bad files
        message = f"cannot decode {what} as an image: {error}; re-export or remove the file"
        raise ValueError(message) from error


def read_gray(uri: str, storage_options: dict | None = None) -> np.ndarray:
    """(H, W) uint8 grayscale image at `uri`."""
    return decode_gray(read_bytes(uri, storage_options), uri)
