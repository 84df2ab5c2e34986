"""The Parquet mask store on local disk and on a real (moto) S3 server."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autosod.io import (
    STORE_SCHEMA,
    MaskStore,
    StoreConfigMismatchError,
    build_manifest,
    config_hash,
    decode_mask_png,
    decode_soft_png,
    encode_mask_png,
    encode_soft_png,
    open_filesystem,
)
from autosod.io import status as st

CONFIG = {"backbone": "efficientnet_lite0", "k_low": 4, "eps": 0.05}


def make_rows(ids: list[str], *, status: str = "ok") -> dict:
    """Store rows with real PNG masks whose content depends on the id."""
    masks, softs = [], []
    for image_id in ids:
        rng = np.random.default_rng(int(image_id.split("-")[1]))
        masks.append(encode_mask_png(rng.random((6, 9)) > 0.5))
        softs.append(encode_soft_png(rng.integers(0, 256, (6, 9), dtype=np.uint8)))
    return {
        "image_id": ids,
        "uri": [f"s3://src/{i}.jpg" for i in ids],
        "width": [9] * len(ids),
        "height": [6] * len(ids),
        "status": [status] * len(ids),
        "mask_png": masks,
        "saliency_png": softs,
        "fg_fraction": [0.5] * len(ids),
    }


def ids_range(start: int, stop: int) -> list[str]:
    return [f"img-{i:04d}" for i in range(start, stop)]


@pytest.fixture(params=["local", "s3"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict | None]:
    """A store location on local disk or in a bucket of the moto server, with its options."""
    if request.param == "local":
        return str(tmp_path / "store"), None
    options = request.getfixturevalue("s3")
    fs, _ = open_filesystem("s3://masks", options)
    fs.mkdir("masks")
    return "s3://masks/run-1", options


def test_round_trip_pixels_and_schema(store_uri: tuple[str, dict | None]) -> None:
    uri, options = store_uri
    store = MaskStore.open(uri, config=CONFIG, storage_options=options)
    ids = ids_range(0, 30)
    store.write_part(make_rows(ids[:20]), shard=0)
    store.write_part(make_rows(ids[20:]), shard=1)
    table = MaskStore.open(uri, storage_options=options).read()
    assert table.schema.equals(STORE_SCHEMA)
    assert sorted(table["image_id"].to_pylist()) == ids
    row = table.filter(pa.compute.equal(table["image_id"], "img-0007")).to_pylist()[0]
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(decode_mask_png(row["mask_png"]), rng.random((6, 9)) > 0.5)
    np.testing.assert_array_equal(decode_soft_png(row["saliency_png"]),
                                  rng.integers(0, 256, (6, 9), dtype=np.uint8))
    assert row["config_hash"] == config_hash(CONFIG) == store.config_hash
    assert store.done_ids() == set(ids)
    batches = list(store.iter_batches(["image_id", "status"], batch_size=7))
    assert max(b.num_rows for b in batches) == 7
    assert sorted(i for b in batches for i in b["image_id"].to_pylist()) == ids


def test_rewriting_a_part_replaces_it(store_uri: tuple[str, dict | None]) -> None:
    uri, options = store_uri
    store = MaskStore.open(uri, config=CONFIG, storage_options=options)
    first = store.write_part(make_rows(ids_range(0, 10)), shard=3)
    second = store.write_part(make_rows(ids_range(0, 10)[::-1]), shard=3)  # same ids, new order
    assert first.data == second.data == f"data/shard-000003/part-{first.part_key}.parquet"
    fs, root = open_filesystem(uri, options)
    assert len(fs.find(f"{root}/data")) == 1 and len(fs.ls(f"{root}/commits")) == 1
    assert store.read(["image_id"]).num_rows == 10


def test_newest_copy_wins_and_failed_rows_retry(store_uri: tuple[str, dict | None]) -> None:
    uri, options = store_uri
    store = MaskStore.open(uri, config=CONFIG, storage_options=options)
    ok_ids, bad_ids, flaky_ids = ids_range(0, 4), ids_range(4, 6), ids_range(6, 9)
    store.write_part(make_rows(ok_ids), shard=0)
    failed = [{"image_id": i, "uri": f"s3://src/{i}.jpg", "status": st.TRUNCATED,
               "error": "image data ends early"} for i in bad_ids]
    store.write_part(failed, shard=0)
    flaky = [{"image_id": i, "uri": f"s3://src/{i}.jpg", "status": status, "error": "boom"}
             for i, status in zip(flaky_ids, (st.READ_ERROR, st.MODEL_ERROR, st.READ_ERROR),
                                  strict=True)]
    store.write_part(flaky, shard=1)
    assert store.status_counts() == {"model_error": 1, "ok": 4, "read_error": 2, "truncated": 2}
    assert store.done_ids() == set(ok_ids + bad_ids + flaky_ids)
    # transient failures are retried, permanent ones (truncated) are not
    assert store.done_ids(retry_failed=True) == set(ok_ids + bad_ids)
    store.write_part(make_rows(flaky_ids), shard=0)  # the retry succeeded, in another part
    table = store.read(["image_id", "status"])
    assert sorted(table["image_id"].to_pylist()) == ok_ids + bad_ids + flaky_ids
    statuses = dict(zip(table["image_id"].to_pylist(), table["status"].to_pylist(), strict=True))
    assert {statuses[i] for i in ok_ids + flaky_ids} == {"ok"}
    assert store.status_counts() == {"ok": 7, "truncated": 2}
    assert store.done_ids(retry_failed=True) == set(ok_ids + bad_ids + flaky_ids)


def test_config_is_remembered_and_mismatch_refused(store_uri: tuple[str, dict | None]) -> None:
    uri, options = store_uri
    MaskStore.open(uri, config=CONFIG, storage_options=options).write_part(
        make_rows(ids_range(0, 3)), shard=0
    )
    reopened = MaskStore.open(uri, storage_options=options)
    assert reopened.config == CONFIG and reopened.config_hash == config_hash(CONFIG)
    other = {**CONFIG, "eps": 0.1}
    with pytest.raises(StoreConfigMismatchError) as info:
        MaskStore.open(uri, config=other, storage_options=options)
    assert config_hash(CONFIG) in str(info.value) and config_hash(other) in str(info.value)
    assert f"eps: {CONFIG.get('eps', '<unset>')!r} -> 0.1" in str(info.value), str(info.value)
    mixed = MaskStore.open(uri, config=other, allow_config_mismatch=True, storage_options=options)
    mixed.write_part(make_rows(ids_range(3, 5)), shard=0)
    hashes = dict(zip(*mixed.read(["image_id", "config_hash"]).to_pydict().values(), strict=True))
    assert hashes["img-0000"] == config_hash(CONFIG) and hashes["img-0004"] == config_hash(other)
    fs, root = open_filesystem(uri, options)
    assert config_hash(other) in json.loads(fs.cat_file(f"{root}/store.json"))["mixed_configs"]


def test_overwrite_summaries_and_manifest(store_uri: tuple[str, dict | None],
                                          tmp_path: Path) -> None:
    uri, options = store_uri
    with pytest.raises(FileNotFoundError, match="pass config= to create one"):
        MaskStore.open(uri, storage_options=options)
    store = MaskStore.open(uri, config=CONFIG, storage_options=options)
    store.write_part(make_rows(ids_range(0, 5)), shard=0)
    assert store.latest_summary() is None
    store.write_summary({"ok": 5, "run": 1})
    second = store.write_summary({"ok": 5, "run": 2})
    assert store.latest_summary() == {"ok": 5, "run": 2} and "summaries/run-" in second
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.jpg").write_bytes(b"1")
    manifest = build_manifest(str(tmp_path / "src"))
    store.save_manifest(manifest)
    assert store.load_manifest().equals(manifest)
    fresh = MaskStore.open(uri, config=CONFIG, mode="overwrite", storage_options=options)
    assert fresh.read().num_rows == 0 and fresh.done_ids() == set()
    assert fresh.latest_summary() is None


def test_store_is_picklable_for_workers(store_uri: tuple[str, dict | None]) -> None:
    uri, options = store_uri
    store = pickle.loads(pickle.dumps(MaskStore.open(uri, config=CONFIG, storage_options=options)))
    store.write_part(make_rows(ids_range(0, 2)), shard=0)
    assert MaskStore.open(uri, storage_options=options).done_ids() == {"img-0000", "img-0001"}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"image_id": ["a"], "uri": ["u"], "status": ["weird"]}, "unknown statuses"),
        ({"image_id": ["a", "a"], "uri": ["u", "v"], "status": ["ok", "ok"]}, "duplicate"),
        ({"image_id": ["a"], "uri": ["u"], "status": ["ok"], "extra": [1]}, "unknown columns"),
        ({"image_id": ["a"], "uri": ["u"]}, "lack required columns"),
    ],
)
def test_invalid_rows_rejected(tmp_path: Path, rows: dict, message: str) -> None:
    store = MaskStore.open(str(tmp_path / "s"), config=CONFIG)
    with pytest.raises(ValueError, match=message):
        store.write_part(rows, shard=0)
    with pytest.raises(ValueError, match="non-negative int"):
        store.write_part(make_rows(["img-0001"]), shard=-1)
    with pytest.raises(ValueError, match="mode must be one of"):
        MaskStore.open(str(tmp_path / "s"), mode="append")


def test_numpy_batch_rows_and_env_endpoint(store_uri: tuple[str, dict | None]) -> None:
    """A Ray-Data-style batch (dict of numpy arrays) is accepted; S3 also works with the
    endpoint taken from AWS_ENDPOINT_URL alone."""
    uri, _ = store_uri
    rows = make_rows(ids_range(0, 3))
    batch = {name: np.array(values, dtype=object) if name.endswith("png") else np.array(values)
             for name, values in rows.items()}
    store = MaskStore.open(uri, config=CONFIG)
    store.write_part(batch, shard=2)
    table = MaskStore.open(uri).read(["image_id", "width", "mask_png"]).sort_by("image_id")
    assert table["image_id"].to_pylist() == ids_range(0, 3)
    assert table["width"].to_pylist() == [9, 9, 9]
    assert table["mask_png"].to_pylist() == rows["mask_png"]



def _downgrade_to_schema_1(uri: str, options: dict | None) -> None:
    """Rewrite a store the way autosod wrote it before schema 2: the mask-quality column named
    `confidence`, commit records without `schema_version`, store.json at version 1."""
    fs, root = open_filesystem(uri, options)
    for path in fs.find(f"{root}/data"):
        with fs.open(path, "rb") as handle:
            table = pq.read_table(handle)
        table = table.rename_columns(
            ["confidence" if name == "mask_quality" else name for name in table.column_names])
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        fs.pipe_file(path, sink.getvalue().to_pybytes())
    for path in fs.find(f"{root}/commits"):
        record = json.loads(fs.cat_file(path))
        del record["schema_version"]
        fs.pipe_file(path, json.dumps(record).encode())
    meta = json.loads(fs.cat_file(f"{root}/store.json"))
    fs.pipe_file(f"{root}/store.json", json.dumps({**meta, "schema_version": 1}).encode())


def test_schema_1_store_reads_confidence_as_mask_quality(
    store_uri: tuple[str, dict | None],
) -> None:
    """Stores written before the rename keep working: their `confidence` column is read as
    `mask_quality`, and a resumed run adds schema-2 parts beside the old ones."""
    uri, options = store_uri
    store = MaskStore.open(uri, config=CONFIG, storage_options=options)
    old_ids, new_ids = ids_range(0, 3), ids_range(3, 5)
    rows = make_rows(old_ids)
    store.write_part({**rows, "mask_quality": [0.25, 0.5, 0.75]}, shard=0)
    store.write_part({**make_rows(old_ids[:1]), "mask_quality": [0.125]}, shard=1)  # replaces one
    _downgrade_to_schema_1(uri, options)
    reopened = MaskStore.open(uri, config=CONFIG, storage_options=options)
    reopened.write_part({**make_rows(new_ids), "mask_quality": [1.0, 2.0]}, shard=2)
    for table in (reopened.read(["image_id", "mask_quality"]),
                  pa.Table.from_batches(list(reopened.iter_batches(["image_id", "mask_quality"],
                                                                   batch_size=2)))):
        got = dict(zip(table["image_id"].to_pylist(), table["mask_quality"].to_pylist(),
                       strict=True))
        assert got == {"img-0000": 0.125, "img-0001": 0.5, "img-0002": 0.75,
                       "img-0003": 1.0, "img-0004": 2.0}
