"""Storage faults never cost data: a commit-log file that cannot be read (on local disk: replaced
by a folder; on S3: GETs failed by a real proxy in front of moto) stops every reader with one
clear line and deletes nothing; reads that fail a few times are retried; a damaged record is a
clear error; once readable again, everything is seen exactly once."""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fault_proxy import FaultProxy
from PIL import Image
from test_io_store import CONFIG, ids_range, make_rows
from typer.testing import CliRunner

from autosod.evaluation.store_source import evaluate_store
from autosod.io import CommitLogError, MaskStore, open_filesystem
from autosod.store_tools.export import export_store
from autosod.store_tools.status import store_status

PARTS, ROWS = 4, 6
BROKEN = 2  # the part whose commit record is made unreadable


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same retries with short pauses (six attempts still take place)."""
    monkeypatch.setattr("autosod.io.store.fetch.FIRST_DELAY_S", 0.01)
    monkeypatch.setattr("autosod.io.store.fetch.MAX_DELAY_S", 0.02)


class Place:
    """A store location plus a way to make one of its files unreadable and readable again."""

    def __init__(self, uri: str, options: dict | None, proxy: FaultProxy | None) -> None:
        self.uri, self.options, self.proxy = uri, options, proxy
        self.fs, self.root = open_filesystem(uri, options)
        self._saved: dict[str, bytes] = {}

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def break_file(self, relative: str, *, times: int | None = None) -> None:
        """Reads of the file fail (all of them, or the next `times` on S3)."""
        if self.proxy is not None:
            self.proxy.fail("GET", f"/{re.escape(self.path(relative))}$", times=times)
            return
        path = self.path(relative)
        self._saved[path] = Path(path).read_bytes()
        os.remove(path)
        os.mkdir(path)  # listed like the record, unreadable: IsADirectoryError

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.clear()
        for path, blob in self._saved.items():
            if os.path.isdir(path):
                os.rmdir(path)
            Path(path).write_bytes(blob)
        self._saved.clear()

    def data_files(self) -> set[str]:
        return set(self.fs.find(self.path("data")))


@pytest.fixture
def s3_place(s3: dict) -> Iterator[Place]:
    """A store in a moto bucket, reached through a `FaultProxy`."""
    proxy = FaultProxy(s3["client_kwargs"]["endpoint_url"])
    try:
        options = {"client_kwargs": {"endpoint_url": proxy.url}}
        open_filesystem("s3://faults", options)[0].mkdir("faults")
        yield Place("s3://faults/store", options, proxy)
    finally:
        proxy.close()


@pytest.fixture(params=["local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "local":
        return Place(str(tmp_path / "store"), None, None)
    return request.getfixturevalue("s3_place")


def _fill(place: Place, bench: Path | None = None) -> tuple[MaskStore, list[str]]:
    """PARTS committed parts of ROWS rows (one id retried in a later part) and GT masks."""
    store = MaskStore.open(place.uri, config=CONFIG, storage_options=place.options)
    ids = ids_range(0, PARTS * ROWS)
    for part in range(PARTS):
        store.write_part(make_rows(ids[part * ROWS : (part + 1) * ROWS]), shard=part)
    store.write_part(make_rows(ids[:1]), shard=0)  # a retry: the newest copy of img-0000 wins
    if bench is not None:
        (bench / "masks").mkdir(parents=True)
        for image_id in ids:
            mask = Image.fromarray(np.full((6, 9), 255, np.uint8))
            mask.save(bench / "masks" / f"{image_id}.png")
    return store, ids


def _record(store: MaskStore, index: int) -> str:
    return f"commits/{store.commits()[index].name}"


def test_unreadable_record_stops_every_reader_and_deletes_nothing(
    place: Place, tmp_path: Path
) -> None:
    store, ids = _fill(place, tmp_path / "bench")
    record = _record(store, BROKEN)
    orphan = place.path("data/shard-000009/part-0123456789abcdef.parquet")
    place.fs.makedirs(os.path.dirname(orphan), exist_ok=True)
    place.fs.pipe_file(orphan, b"left by a killed writer")
    files_before = place.data_files()
    place.break_file(record)

    with pytest.raises(CommitLogError) as info:
        store.commit_log()
    message = str(info.value)
    assert record.split("/")[-1] in message and "cannot be read after 6 attempts" in message
    assert "nothing was deleted" in message and "\n" not in message
    with pytest.raises(CommitLogError):
        store.remove_uncommitted(min_age_s=0)  # even with no age rule: nothing goes
    assert place.data_files() == files_before
    for reader in (lambda: store_status(place.uri, storage_options=place.options),
                   lambda: export_store(place.uri, str(tmp_path / "out"),
                                        storage_options=place.options),
                   lambda: evaluate_store(place.uri, str(tmp_path / "bench"),
                                          storage_options=place.options)):
        with pytest.raises(CommitLogError, match="cannot be read"):
            reader()
    if place.proxy is None:  # the CLI prints the one line and exits 2
        from autosod.cli import app

        result = CliRunner().invoke(app, ["status", place.uri])
        assert result.exit_code == 2 and record.split("/")[-1] in result.output, result.output

    place.restore()
    status = store_status(place.uri, storage_options=place.options)
    assert status["committed"] == len(ids) and status["done"] == len(ids)
    exported = export_store(place.uri, str(tmp_path / "out"), storage_options=place.options)
    assert exported.written == len(ids) and exported.renamed == 0
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.png")) == ids
    evaluated = evaluate_store(place.uri, str(tmp_path / "bench"), storage_options=place.options)
    assert evaluated.metrics["count"] == len(ids) and not evaluated.pairing["missing_examples"]
    rows = Counter(store.read(["image_id"])["image_id"].to_pylist())
    assert sorted(rows) == ids and set(rows.values()) == {1}
    assert store.remove_uncommitted(min_age_s=0) == 1  # only the orphan
    assert place.data_files() == files_before - {orphan}


def test_transient_failures_are_retried(place: Place, caplog: pytest.LogCaptureFixture) -> None:
    store, ids = _fill(place)
    record = _record(store, BROKEN)
    if place.proxy is not None:
        place.break_file(record, times=3)
    else:  # on disk: readable again after the third failed read
        place.break_file(record)
        restorer = _RestoreAfter(place, failures=3)
        logging.getLogger("autosod.io.store.fetch").addHandler(restorer)
    caplog.set_level(logging.WARNING, logger="autosod.io.store.fetch")
    try:
        log = store.commit_log()
    finally:
        if place.proxy is None:
            logging.getLogger("autosod.io.store.fetch").removeHandler(restorer)
    retries = [r for r in caplog.records if "could not be read" in r.getMessage()]
    assert len(retries) == 3, [r.getMessage() for r in retries]
    assert sorted(log.ids().to_pylist()) == ids
    rows = Counter(store.read(["image_id"], log=log)["image_id"].to_pylist())
    assert sorted(rows) == ids and set(rows.values()) == {1}


class _RestoreAfter(logging.Handler):
    """Puts the broken file back once the reader has logged `failures` failed attempts."""

    def __init__(self, place: Place, failures: int) -> None:
        super().__init__(logging.WARNING)
        self._place, self._left = place, failures

    def emit(self, record: logging.LogRecord) -> None:
        self._left -= 1
        if self._left == 0:
            self._place.restore()


def test_damaged_record_is_a_clear_error_and_costs_nothing(place: Place) -> None:
    store, ids = _fill(place)
    record = place.path(_record(store, BROKEN))
    whole = place.fs.cat_file(record)
    files_before = place.data_files()
    place.fs.pipe_file(record, whole[: len(whole) // 2])  # a truncated record
    with pytest.raises(CommitLogError, match="cannot be parsed after 6 attempts"):
        store.commit_log()
    with pytest.raises(CommitLogError):
        store.remove_uncommitted(min_age_s=0)
    assert place.data_files() == files_before
    place.fs.pipe_file(record, whole)
    assert sorted(store.commit_log().ids().to_pylist()) == ids


def test_s3_part_reads_are_retried_and_a_lost_part_is_named(s3_place: Place) -> None:
    place = s3_place
    store, ids = _fill(place)
    part = store.commits()[1].data
    place.break_file(part, times=2)
    assert sorted(store.read(["image_id"])["image_id"].to_pylist()) == ids
    place.break_file(part)
    with pytest.raises(OSError, match=f"{part}.* cannot be read after 6 attempts"):
        store.read(["image_id"])
    place.restore()
    place.fs.rm_file(place.path(part))
    with pytest.raises(FileNotFoundError, match="missing: the store is damaged"):
        store.read(["image_id"])


def test_cleanup_spares_young_files_and_every_committed_one(tmp_path: Path) -> None:
    place = Place(str(tmp_path / "store"), None, None)
    store, _ = _fill(place)
    committed = place.data_files()
    old, young = place.path("data/shard-000001/part-old.parquet"), place.path("data/x.parquet")
    stray = place.path("commits/.tmp-0123-shard-000001-part-x.json")
    scratch = place.path("scratch/run-old/todo-00000.parquet")
    for path in (old, young, stray, scratch):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_bytes(b"x")
    hour_ago = os.path.getmtime(young) - 7200
    for path in (old, stray, scratch):
        os.utime(path, (hour_ago, hour_ago))
    assert store.remove_uncommitted() == 3
    assert place.data_files() == committed | {young}
    assert not os.path.exists(stray) and not os.path.exists(os.path.dirname(scratch))
    assert store.remove_uncommitted(min_age_s=0) == 1  # the young orphan, nothing committed
    assert place.data_files() == committed


def test_s3_parts_written_by_another_process_after_this_one_listed_them_are_read(
    s3_place: Place,
) -> None:
    """The labelling driver lists data/ (cleanup) before its workers write new parts; s3fs keeps
    that listing. Reading the store afterwards in the same process must read the new parts,
    not call them missing because the old listing lacks them."""
    import s3fs

    place = s3_place
    store, ids = _fill(place)
    assert store.remove_uncommitted() == 0  # lists every data folder, as the driver does
    s3fs.S3FileSystem.clear_instance_cache()  # the writer: another process, its own client
    writer = MaskStore.open(place.uri, storage_options=place.options)
    assert writer.filesystem is not store.filesystem
    new = ids_range(PARTS * ROWS, PARTS * ROWS + 2 * ROWS)
    writer.write_part(make_rows(new[:ROWS]), shard=0)  # a folder the reader listed
    writer.write_part(make_rows(new[ROWS:]), shard=7)  # a folder new since the listing
    rows = Counter(store.read(["image_id"])["image_id"].to_pylist())
    assert sorted(rows) == ids + new and set(rows.values()) == {1}
    newest = store.parts()[-2:]
    assert sorted(i for p in newest for i in store.read_part(p, ["image_id"])["image_id"]
                  .to_pylist()) == new
    batches = store.iter_batches(["image_id"], batch_size=5)
    assert sorted(i for b in batches for i in b["image_id"].to_pylist()) == ids + new
