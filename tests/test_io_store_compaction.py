"""Compaction of the commit log: one Parquet file of committed ids replaces many records, and
every reader gets the same answers before, after, and in each crash window of a compaction."""

from __future__ import annotations

import posixpath
import re

from test_io_store import CONFIG, ids_range, make_rows
from test_io_store_faults import Place, place, s3_place  # noqa: F401 - fixtures

from autosod.io import MaskStore
from autosod.io import status as st


def _answers(store: MaskStore) -> dict:
    """Everything a reader can ask the store, in comparable form."""
    log = store.commit_log()
    rows = store.read(["image_id", "status", "mask_png"], log=log).sort_by("image_id")
    batches = [b for b in store.iter_batches(["image_id"], batch_size=5, log=log)]
    return {
        "counts": log.status_counts(),
        "ids": sorted(log.ids().to_pylist()),
        "done": store.done_ids(retry_failed=True, log=log),
        "rows": rows.to_pylist(),
        "batched": sorted(i for b in batches for i in b["image_id"].to_pylist()),
        "parts": [store.read_part(p, ["image_id"]).num_rows for p in store.parts(log)],
    }


def _history(store: MaskStore) -> None:
    """Parts with failures, retries that replace some of their rows, and a rewritten part."""
    store.write_part(make_rows(ids_range(0, 8)), shard=0)
    flaky = [{"image_id": i, "uri": f"s3://src/{i}.jpg", "status": s, "error": "boom"}
             for i, s in zip(ids_range(8, 12), (st.READ_ERROR, st.MODEL_ERROR, st.TRUNCATED,
                                                st.READ_ERROR), strict=True)]
    store.write_part(flaky, shard=1)
    store.write_part(make_rows(ids_range(12, 20)), shard=1)
    store.write_part(make_rows(["img-0008", "img-0009", "img-0003"]), shard=1)  # retries
    store.write_part(make_rows(ids_range(12, 20)), shard=1)  # the same ids again: same file


def _commit_names(where: Place) -> list[str]:
    return sorted(posixpath.basename(p) for p in where.fs.ls(where.path("commits"),
                                                            detail=False))


def test_compaction_keeps_every_answer(place: Place) -> None:  # noqa: F811
    store = MaskStore.open(place.uri, config=CONFIG, storage_options=place.options)
    _history(store)
    before = _answers(store)
    assert before["counts"] == {"ok": 18, "read_error": 1, "truncated": 1}
    data_before = place.data_files()
    store.compact()
    names = _commit_names(place)
    assert len(names) == 1 and re.fullmatch(r"compacted-\d{20}-[0-9a-f]{8}\.parquet", names[0])
    reopened = MaskStore.open(place.uri, storage_options=place.options)
    assert _answers(reopened) == before
    assert reopened.remove_uncommitted(min_age_s=0) == 0  # every part file stays committed
    assert place.data_files() == data_before

    retry = [{"image_id": "img-0011", "uri": "s3://src/img-0011.jpg", "status": st.OK}]
    reopened.write_part(retry, shard=2)  # newer than the compacted file: it wins
    after = _answers(reopened)
    assert after["counts"] == {"ok": 19, "truncated": 1}
    store.compact()
    assert len(_commit_names(place)) == 1
    assert _answers(reopened) == after


def test_interrupted_compactions_lose_nothing(place: Place) -> None:  # noqa: F811
    """Records left beside the compacted file that holds them (killed before deleting them), and
    an old compacted file left beside a newer one, change no answer."""
    store = MaskStore.open(place.uri, config=CONFIG, storage_options=place.options)
    _history(store)
    records = {name: place.fs.cat_file(place.path(f"commits/{name}"))
               for name in _commit_names(place)}
    first = store.compact()
    old_compacted = {n: place.fs.cat_file(place.path(f"commits/{n}"))
                     for n in first.compacted_files}
    store.write_part(make_rows(ids_range(20, 25)), shard=3)
    expected = _answers(store)
    store.compact()
    for name, blob in {**records, **old_compacted}.items():  # as if never deleted
        place.fs.pipe_file(place.path(f"commits/{name}"), blob)
    assert len(_commit_names(place)) == len(records) + 2
    assert _answers(store) == expected
    store.compact()  # the next compaction removes the leftovers
    assert len(_commit_names(place)) == 1 and _answers(store) == expected


def test_refresh_reads_only_new_records_and_rereads_after_a_compaction(
    s3_place: Place,  # noqa: F811
) -> None:
    where = s3_place
    store = MaskStore.open(where.uri, config=CONFIG, storage_options=where.options)
    _history(store)
    log = store.commit_log()
    store.write_part(make_rows(ids_range(30, 33)), shard=4)
    where.proxy.forwarded.clear()
    refreshed = store.commit_log(previous=log)
    gets = [path for method, path in where.proxy.forwarded
            if method == "GET" and "/commits/" in path]
    assert len(gets) == 1 and gets[0].endswith(".json"), gets
    full = store.commit_log()
    assert refreshed.status_counts() == full.status_counts()
    assert sorted(refreshed.ids().to_pylist()) == sorted(full.ids().to_pylist())

    MaskStore.open(where.uri, storage_options=where.options).compact()  # another process
    again = store.commit_log(previous=refreshed)  # its records are gone: read everything
    assert again.compacted_files and not again.record_files
    assert sorted(again.ids().to_pylist()) == sorted(full.ids().to_pylist())


def test_a_record_that_vanishes_mid_read_makes_the_reader_list_again(
    s3_place: Place,  # noqa: F811
) -> None:
    """A listed record answered with 404 (as when a compaction deleted it) is not skipped."""
    where = s3_place
    store = MaskStore.open(where.uri, config=CONFIG, storage_options=where.options)
    _history(store)
    expected = _answers(store)
    rule = where.proxy.fail("GET", r"/commits/shard-000001-.*\.json$", times=1, status=404,
                            code="NoSuchKey")
    assert _answers(store) == expected
    assert rule.hits == 1


def test_refresh_sees_a_rewritten_record(place: Place) -> None:  # noqa: F811
    """Writing the same ids again replaces a record under the same name: a refreshed log must
    read it again, or the run's summary (and the next compaction) would keep stale statuses."""
    store = MaskStore.open(place.uri, config=CONFIG, storage_options=place.options)
    failed = [{"image_id": i, "uri": f"s3://src/{i}.jpg", "status": st.READ_ERROR}
              for i in ids_range(0, 3)]
    store.write_part(failed, shard=0)
    store.write_part(make_rows(ids_range(3, 6)), shard=0)
    log = store.commit_log()
    assert log.status_counts() == {"ok": 3, "read_error": 3}
    store.write_part(make_rows(ids_range(0, 3)), shard=0)  # the retry: same ids, same name
    assert len(_commit_names(place)) == 2
    refreshed = store.commit_log(previous=log)
    assert refreshed.status_counts() == {"ok": 6} == store.commit_log().status_counts()
