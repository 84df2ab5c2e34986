"""The labelling driver before Ray (`labeling.prepare`): the commit log is read once and a file
of it that cannot be read stops the run before anything is deleted or written; the todo list is
the manifest minus done ids, with retryable failures retried unless `retry_failed` is off."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_io_store_faults import Place, s3_place  # noqa: F401 - fixture

from autosod.io import MaskStore
from autosod.io import status as st
from autosod.labeling.config import build_label_config
from autosod.labeling.prepare import PreflightError, final_log, prepare_run


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("autosod.io.store.fetch.FIRST_DELAY_S", 0.01)
    monkeypatch.setattr("autosod.io.store.fetch.MAX_DELAY_S", 0.02)


def _source(root: Path, count: int) -> Path:
    """A folder of `count` files named like images (the driver never decodes them here)."""
    folder = root / "images"
    folder.mkdir()
    for index in range(count):
        (folder / f"img-{index:03d}.jpg").write_bytes(b"not decoded before Ray")
    return folder


def _todo_ids(prepared) -> list[str]:
    fs = prepared.store.filesystem
    ids = []
    for path in prepared.todo.paths:
        with fs.open(path, "rb") as handle:
            ids += pq.read_table(handle, columns=["image_id"])["image_id"].to_pylist()
    return ids


def _label(store: MaskStore, manifest: list[dict], statuses: list[str]) -> None:
    """Commit rows for the first manifest rows as a run would (one part)."""
    rows = [{"image_id": row["image_id"], "uri": row["uri"], "status": status}
            for row, status in zip(manifest, statuses, strict=False)]
    store.write_part(rows, shard=0)


def test_todo_is_manifest_minus_done_and_retries_only_transient_failures(tmp_path: Path) -> None:
    config = build_label_config(source=str(_source(tmp_path, 30)), store=str(tmp_path / "st"))
    store = MaskStore.open(config.store, config={"test": 1})
    first = prepare_run(config, store, preflight=False)
    assert first.todo.num_rows == first.todo.selected == 30 and first.todo.skipped == 0
    manifest = store.load_manifest().to_pylist()
    assert sorted(_todo_ids(first)) == sorted(r["image_id"] for r in manifest)
    statuses = [st.OK] * 6 + [st.READ_ERROR, st.MODEL_ERROR, st.TRUNCATED, st.NOT_AN_IMAGE]
    _label(store, manifest, statuses)

    again = prepare_run(config, store, preflight=False)
    retried = {manifest[6]["image_id"], manifest[7]["image_id"]}
    expected = {r["image_id"] for r in manifest[10:]} | retried
    assert set(_todo_ids(again)) == expected and again.todo.num_rows == 22
    assert again.todo.skipped == 8
    no_retry = prepare_run(build_label_config(source=config.source, store=config.store,
                                              retry_failed=False), store, preflight=False)
    assert set(_todo_ids(no_retry)) == expected - retried
    limited = prepare_run(build_label_config(source=config.source, store=config.store,
                                             limit=12), store, preflight=False)
    assert limited.todo.selected == 12
    assert set(_todo_ids(limited)) == {r["image_id"] for r in manifest[10:12]} | retried


def test_unreadable_record_stops_the_run_before_cleanup_or_todo(tmp_path: Path) -> None:
    config = build_label_config(source=str(_source(tmp_path, 12)), store=str(tmp_path / "st"))
    store = MaskStore.open(config.store, config={"test": 1})
    prepare_run(config, store, preflight=False)
    manifest = store.load_manifest().to_pylist()
    _label(store, manifest[:4], [st.OK] * 4)
    _label(store, manifest[4:8], [st.OK] * 4)
    orphan = Path(config.store) / "data" / "shard-000000" / "part-killed.parquet"
    orphan.write_bytes(b"left by a killed writer two hours ago")
    two_hours_ago = time.time() - 7200
    os.utime(orphan, (two_hours_ago, two_hours_ago))
    place = Place(config.store, None, None)
    record = f"commits/{store.commits()[1].name}"
    files, scratch = place.data_files(), set(os.listdir(Path(config.store) / "scratch"))
    place.break_file(record)

    with pytest.raises(PreflightError, match=f"{record.split('/')[1]}.* cannot be read"):
        prepare_run(config, store, preflight=False)
    assert place.data_files() == files, "a run that cannot read its commit log deleted data"
    assert set(os.listdir(Path(config.store) / "scratch")) == scratch, "it wrote a todo list"

    place.restore()
    prepared = prepare_run(config, store, preflight=False)
    assert prepared.todo.skipped == 8 and prepared.todo.num_rows == 4
    assert place.data_files() == files - {str(orphan)}, "only the old orphan goes"


def test_saved_manifest_is_reused_for_the_same_source_only(tmp_path: Path) -> None:
    """A rerun plans from the manifest saved in the store (no relisting), another source
    is listed again and replaces it."""
    source = _source(tmp_path, 5)
    config = build_label_config(source=str(source), store=str(tmp_path / "st"))
    store = MaskStore.open(config.store, config={"test": 1})
    assert prepare_run(config, store, preflight=False).manifest.num_rows == 5
    for image in source.iterdir():  # relisting would now find nothing and fail
        image.unlink()
    assert prepare_run(config, store, preflight=False).todo.num_rows == 5
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.png").write_bytes(b"x")
    relisted = prepare_run(build_label_config(source=str(other), store=config.store), store,
                           preflight=False)
    assert relisted.manifest.num_rows == 1
    assert store.load_manifest()["uri"].to_pylist() == [f"file://{other}/x.png"]


def test_a_run_reads_each_commit_record_once(s3_place, tmp_path: Path) -> None:  # noqa: F811
    """Planning (todo, cleanup) and the end of the run (counts) read the log once: every
    record is fetched one time, those written during the run included."""
    place = s3_place
    config = build_label_config(source=str(_source(tmp_path, 20)), store=place.uri,
                                storage_options=place.options)
    store = MaskStore.open(place.uri, config={"test": 1}, storage_options=place.options)
    prepare_run(config, store, preflight=False)
    manifest = store.load_manifest().to_pylist()
    for start in (0, 4, 8):
        _label(store, manifest[start : start + 4], [st.OK] * 4)
    place.proxy.forwarded.clear()
    prepared = prepare_run(config, store, preflight=False)
    _label(store, manifest[12:16], [st.OK] * 4)  # what the run's writers commit
    log = final_log(store, prepared.log)
    gets = Counter(path.rsplit("/", 1)[1] for method, path in place.proxy.forwarded
                   if method == "GET" and "/commits/shard-" in path)
    assert len(gets) == 4 and set(gets.values()) == {1}, gets
    assert log.status_counts() == {"ok": 16}
