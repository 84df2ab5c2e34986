"""What the labelling driver does before Ray starts, at any scale (no Ray, no torch here).

Read the store's commit log once (a file that cannot be read stops the run before anything is
deleted or relabelled), reuse or build the manifest (streamed a row group at a time, never
whole), check the weights and the first images, clean up and compact the store, and write the
todo rows (manifest minus done ids) as Parquet files in the store's scratch folder, which Ray
Data reads (`job_pipeline.todo_dataset`). Memory stays in Arrow: ten million manifest rows and five
million committed ids plan in well under 3 GB (docs/benchmarks.md, `plan`).
"""

from __future__ import annotations

import logging
import posixpath
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from autosod.io.decode import read_image
from autosod.io.manifest import build_manifest
from autosod.io.status import OK
from autosod.io.store.commit_log import CommitLogError
from autosod.io.store.compaction import COMPACT_MIN_RECORDS
from autosod.io.store.id_set import IdSet
from autosod.io.store.log_state import CommitLog
from autosod.io.store.mask_store import MaskStore
from autosod.labeling.config import JobSettings, LabelJobConfig

__all__ = [
    "TODO_COLUMNS",
    "PreflightError",
    "PreparedRun",
    "RunManifest",
    "Todo",
    "final_log",
    "prepare_run",
    "read_todo_files",
]

logger = logging.getLogger(__name__)

TODO_COLUMNS = ("image_id", "uri", "shard")
_PREFLIGHT_DECODE_TRIES = 16
_TODO_FILE_ROWS = 1 << 20  # manifest rows per todo file (one Ray Data read task each)


class PreflightError(RuntimeError):
    """A check before the heavy work failed (source, store, commit log, weights or decoding)."""


@dataclass(frozen=True)
class RunManifest:
    """The run's manifest, saved in the store and read a row group at a time (never whole)."""

    file: pq.ParquetFile
    num_rows: int

    def first_uris(self, count: int) -> list[str]:
        """The URIs of the first `count` rows (only they are converted to Python)."""
        batch = next(self.file.iter_batches(batch_size=count, columns=["uri"]), None)
        return [] if batch is None else batch.column(0).to_pylist()


@dataclass(frozen=True)
class Todo:
    """What this run labels: manifest rows not done yet, as Parquet files in the store's
    scratch folder (`scratch/<run_id>/`) that Ray Data reads; never a driver-side list."""

    run_id: str
    paths: tuple[str, ...]
    num_rows: int
    skipped: int  # selected manifest rows already done
    selected: int  # manifest rows considered (all, or the first `limit`)


@dataclass(frozen=True)
class PreparedRun:
    """What the driver knows before Ray starts."""

    store: MaskStore
    log: CommitLog
    manifest: RunManifest
    todo: Todo


def _commit_log(store: MaskStore) -> CommitLog:
    try:
        return store.commit_log()
    except CommitLogError as exc:
        raise PreflightError(str(exc)) from exc


def _manifest(config: JobSettings, store: MaskStore) -> RunManifest:
    """The store's saved manifest when it lists the same source; otherwise list once and save."""
    saved = store.manifest_file()
    meta = (saved.schema_arrow.metadata or {}) if saved is not None else {}
    if saved is not None and meta.get(b"autosod_source") == config.source.encode():
        logger.info("reusing the store's manifest (%d images)", saved.metadata.num_rows)
        return RunManifest(saved, saved.metadata.num_rows)
    try:
        table = build_manifest(config.source, storage_options=config.storage_options,
                               shard_size=config.shard_size)
    except Exception as exc:
        raise PreflightError(f"cannot list the source {config.source!r}: "
                             f"{type(exc).__name__}: {exc}") from exc
    if table.num_rows == 0:
        raise PreflightError(f"no images found in {config.source!r}; check the path and "
                             "the file extensions (.jpg, .png, ...)")
    store.save_manifest(table.replace_schema_metadata({"autosod_source": config.source}))
    del table
    saved = store.manifest_file()
    return RunManifest(saved, saved.metadata.num_rows)


def _check_labeler_weights(config: LabelJobConfig) -> None:
    """The labeller's backbone weights resolve and load."""
    from autosod.labeling.labeler import check_weights  # torch: only when a run checks

    try:
        check_weights(config.labeler, storage_options=config.storage_options)
    except Exception as exc:
        raise PreflightError(f"weights {config.labeler.weights!r} cannot be loaded: "
                             f"{type(exc).__name__}: {exc}") from exc


def _preflight(config: JobSettings, manifest: RunManifest,
               check_model: Callable[[], None] | None) -> None:
    """The model loads (`check_model`, default: the labeller's weights); at least one of the
    first images decodes."""
    if check_model is not None:
        check_model()
    else:
        _check_labeler_weights(config)
    reasons = []
    for uri in manifest.first_uris(_PREFLIGHT_DECODE_TRIES):
        result = read_image(uri, max_pixels=config.max_pixels,
                            storage_options=config.storage_options)
        if result.status == OK:
            return
        reasons.append(f"{uri}: {result.status} ({result.error[:120]})")
    raise PreflightError("none of the first images could be read and decoded:\n  "
                         + "\n  ".join(reasons))


def _cleanup(store: MaskStore, log: CommitLog) -> CommitLog:
    """Before any writer starts: compact a long commit log, then delete what no commit names
    (only files old enough that no writer of an earlier run can still be about to commit)."""
    if len(log.record_files) >= COMPACT_MIN_RECORDS:
        log = store.compact(log)
    removed = store.remove_uncommitted(log)
    if removed:
        logger.info("removed %d files left uncommitted by an earlier run", removed)
    return log


def _todo(manifest: RunManifest, store: MaskStore, log: CommitLog,
          config: JobSettings) -> Todo:
    """Stream the manifest (its first `limit` rows), drop done ids, write the rest as todo
    files. Done: committed ids, less retryable failures when `config.retry_failed`."""
    done = IdSet(log.done_ids(retry_failed=config.retry_failed))
    run_id = f"run-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    directory = store.scratch_dir(run_id)
    fs = store.filesystem
    left = config.limit if config.limit else manifest.num_rows
    paths: list[str] = []
    rows = selected = 0
    for batch in manifest.file.iter_batches(batch_size=_TODO_FILE_ROWS,
                                            columns=list(TODO_COLUMNS)):
        if left <= 0:
            break
        chunk = pa.Table.from_batches([batch.slice(0, left)])
        left -= chunk.num_rows
        selected += chunk.num_rows
        todo = done.without(chunk)
        if todo.num_rows:
            path = posixpath.join(directory, f"todo-{len(paths):05d}.parquet")
            fs.makedirs(directory, exist_ok=True)
            with fs.open(path, "wb") as handle:
                pq.write_table(todo, handle)
            paths.append(path)
            rows += todo.num_rows
    return Todo(run_id, tuple(paths), rows, selected - rows, selected)


def prepare_run(config: JobSettings, store: MaskStore, *, preflight: bool = True,
                lap: Callable[[str], None] | None = None,
                check_model: Callable[[], None] | None = None) -> PreparedRun:
    """Read the commit log once, get the manifest (`lap("manifest")`), check the model
    (`check_model`, default: the labeller's weights) and images (`preflight`), clean up and
    compact the store, write the todo files (`lap("preflight")`). `config`: a `LabelJobConfig`
    or any job config with the same job fields (prediction's)."""
    log = _commit_log(store)
    manifest = _manifest(config, store)
    if lap:
        lap("manifest")
    if preflight:
        _preflight(config, manifest, check_model)
    log = _cleanup(store, log)
    todo = _todo(manifest, store, log, config)
    if lap:
        lap("preflight")
    return PreparedRun(store, log, manifest, todo)


def final_log(store: MaskStore, log: CommitLog) -> CommitLog:
    """The log after the run: only the records written since `log` are read (not the whole
    log again), then a long log is compacted (no writer runs any more)."""
    log = store.commit_log(previous=log)
    if len(log.record_files) >= COMPACT_MIN_RECORDS:
        log = store.compact(log)
    return log


def read_todo_files(batch: dict[str, Any], *, store: MaskStore) -> pa.Table:
    """Ray Data task body: the rows of the todo files named in `batch["path"]` (TODO_COLUMNS)."""
    tables = [pq.read_table(path, columns=list(TODO_COLUMNS), filesystem=store.filesystem)
              for path in batch["path"]]
    return pa.concat_tables(tables)
