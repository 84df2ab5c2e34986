"""Predictions read from a mask store: each committed row's soft map, paired with the GT by the
stem of the row's `uri` (the name `autosod export` gives its PNG, `<image stem>.png`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from autosod.evaluation.evaluate import EvaluationResult, evaluate_pairs, fit_to_gt, result_from
from autosod.evaluation.metrics import SodMetrics
from autosod.evaluation.pairing import Pairing, gt_folder, list_by_stem, read_gray
from autosod.io.filesystem import file_stem
from autosod.io.mask_codec import decode_soft_png
from autosod.io.status import OK
from autosod.io.store.mask_store import MaskStore, StorePart

__all__ = [
    "StorePairer",
    "evaluate_store",
    "evaluate_store_parts",
    "is_store",
    "merge_part_reports",
]

logger = logging.getLogger(__name__)

_COLUMNS = ["uri", "status", "saliency_png"]


def is_store(uri: str, storage_options: dict | None = None) -> bool:
    """True when `uri` holds a mask store (its store.json), False for a plain folder."""
    try:
        MaskStore.open(uri, storage_options=storage_options)
    except FileNotFoundError:
        return False
    return True


@dataclass
class StorePairer:
    """Pairs store rows with GT masks by the stem of their `uri`, recording what does not pair.

    `gts` maps stem -> GT mask URI. `seen` holds every stem met so far; the caller computes the
    missing stems once all rows have passed (`finish`).
    """

    gts: dict[str, str]
    storage_options: dict | None = None
    pairing: Pairing = field(default_factory=lambda: Pairing(pairs=[]))
    seen: set[str] = field(default_factory=set)

    def pairs(self, rows: pa.Table | pa.RecordBatch) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(pred, gt) uint8 pairs of the ok rows of `rows` whose stem has a GT mask."""
        columns = rows.select(_COLUMNS).to_pydict()
        for uri, status, soft_png in zip(*(columns[c] for c in _COLUMNS), strict=True):
            stem = file_stem(uri)
            if stem in self.seen:
                self.pairing.failed[stem] = f"duplicate stem (also {uri})"
                continue
            self.seen.add(stem)
            if status != OK or soft_png is None:
                self.pairing.failed[stem] = status
            elif stem not in self.gts:
                self.pairing.extra.append(stem)
            else:
                gt = read_gray(self.gts[stem], self.storage_options)
                yield fit_to_gt(decode_soft_png(soft_png), gt)

    def finish(self) -> Pairing:
        """The pairing report once every row has been paired."""
        self.pairing.missing.extend(sorted(stem for stem in self.gts if stem not in self.seen))
        return self.pairing


def evaluate_store_parts(
    batch: dict[str, np.ndarray],
    *,
    store: MaskStore,
    gts: dict[str, str],
    storage_options: dict | None = None,
) -> dict[str, np.ndarray]:
    """A batch of parts (the columns of `StorePart.to_item()`, one row per part) -> one row:
    the `SodMetrics.state()` of their rows plus JSON of the stems seen, failed and extra (what
    the driver needs for the report)."""
    pairer = StorePairer(gts, storage_options)
    metrics = SodMetrics()
    for index in range(len(batch["data"])):
        part = StorePart.from_item({name: values[index] for name, values in batch.items()})
        rows = store.read_part(part, columns=_COLUMNS)
        evaluate_pairs(pairer.pairs(rows), metrics)
    report = {
        "seen": sorted(pairer.seen),
        "failed": pairer.pairing.failed,
        "extra": pairer.pairing.extra,
    }
    state = {key: np.asarray(value)[None] for key, value in metrics.state().items()}
    return {**state, "pairing_json": np.array([json.dumps(report)])}


def merge_part_reports(reports: list[dict], gts: dict[str, str]) -> Pairing:
    """The pairing of a whole store from the per-batch reports of `evaluate_store_parts`."""
    pairing = Pairing(pairs=[])
    seen: set[str] = set()
    for report in reports:
        for stem in report["seen"]:
            if stem in seen:
                pairing.failed[stem] = "duplicate stem in several parts (evaluated twice)"
            seen.add(stem)
        pairing.failed.update(report["failed"])
        pairing.extra.extend(report["extra"])
    pairing.missing.extend(sorted(stem for stem in gts if stem not in seen))
    return pairing


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
    pairer = StorePairer(gts, storage_options)
    batches = store.iter_batches(columns=_COLUMNS, batch_size=256)
    metrics = evaluate_pairs(pair for batch in batches for pair in pairer.pairs(batch))
    pairing = pairer.finish()
    pairing.log()
    result = result_from(metrics, pairing, name or store_uri.rstrip("/").rsplit("/", 1)[-1])
    result.pairing["matched"] = metrics.count  # store rows are paired while streaming
    logger.info("evaluated %d store rows from %s", metrics.count, store_uri)
    return result
