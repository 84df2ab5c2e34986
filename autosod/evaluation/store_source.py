"""Predictions read from a mask store: each committed row's soft map, paired with the GT by the
stem of the row's `uri` (the name `autosod export` gives its PNG, `<image stem>.png`)."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterator

import numpy as np

from autosod.evaluation.evaluate import EvaluationResult, evaluate_pairs, fit_to_gt, result_from
from autosod.evaluation.pairing import Pairing, gt_folder, list_by_stem, read_gray
from autosod.io.mask_codec import decode_soft_png
from autosod.io.mask_store import MaskStore
from autosod.io.status import OK

__all__ = ["evaluate_store", "is_store", "uri_stem"]

logger = logging.getLogger(__name__)

_COLUMNS = ["uri", "status", "saliency_png"]


def uri_stem(uri: str) -> str:
    """The file stem of an image URI: `s3://b/dir/cat.01.jpg` -> `cat.01`."""
    return posixpath.splitext(posixpath.basename(uri.rstrip("/")))[0]


def is_store(uri: str, storage_options: dict | None = None) -> bool:
    """True when `uri` holds a mask store (its store.json), False for a plain folder."""
    try:
        MaskStore.open(uri, storage_options=storage_options)
    except FileNotFoundError:
        return False
    return True


def _store_pairs(
    store: MaskStore, gts: dict[str, str], pairing: Pairing, storage_options: dict | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (pred, gt) uint8 pairs of ok rows whose stem has a mask; record the rest in pairing."""
    seen: set[str] = set()
    for batch in store.iter_batches(columns=_COLUMNS, batch_size=256):
        columns = batch.to_pydict()
        for uri, status, soft_png in zip(*(columns[c] for c in _COLUMNS), strict=True):
            stem = uri_stem(uri)
            if stem in seen:
                pairing.failed[stem] = f"duplicate stem (also {uri})"
                continue
            seen.add(stem)
            if status != OK or soft_png is None:
                pairing.failed[stem] = status
            elif stem not in gts:
                pairing.extra.append(stem)
            else:
                gt = read_gray(gts[stem], storage_options)
                yield fit_to_gt(decode_soft_png(soft_png), gt)
    pairing.missing.extend(sorted(stem for stem in gts if stem not in seen))


def evaluate_store(
    store_uri: str,
    benchmark: str,
    *,
    name: str | None = None,
    storage_options: dict | None = None,
) -> EvaluationResult:
    """Evaluate the soft maps of a mask store against a benchmark folder's masks."""
    store = MaskStore.open(store_uri, storage_options=storage_options)
    gts = list_by_stem(gt_folder(benchmark, storage_options), storage_options)
    if not gts:
        raise ValueError(f"no mask images found in the benchmark folder {benchmark!r}")
    pairing = Pairing(pairs=[])
    metrics = evaluate_pairs(_store_pairs(store, gts, pairing, storage_options))
    pairing.log()
    result = result_from(metrics, pairing, name or store_uri.rstrip("/").rsplit("/", 1)[-1])
    result.pairing["matched"] = metrics.count  # store rows are paired while streaming
    logger.info("evaluated %d store rows from %s", metrics.count, store_uri)
    return result
