"""Manifests from local folders, globs, URI lists, saved manifests and a real S3 prefix."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from autosod.io import (
    MANIFEST_SCHEMA,
    build_manifest,
    image_id_for,
    load_manifest,
    open_filesystem,
    save_manifest,
)


def _sha1_id(uri: str) -> str:
    return hashlib.sha1(uri.encode()).hexdigest()[:20]


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """Images in nested folders, mixed-case extensions, plus files that must be skipped."""
    root = tmp_path / "imgs"
    names = ["a.jpg", "b.JPEG", "c/d.Png", "c/e.webp", "c/f/g.BMP", "c/f/h.tif", "i.TIFF",
             "j.gif", "k.txt", "l.json", "c/m.jpg.bak", "noext"]
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (len(name) + 1))
    return root


IMAGES_IN_TREE = ["a.jpg", "b.JPEG", "c/d.Png", "c/e.webp", "c/f/g.BMP", "c/f/h.tif", "i.TIFF",
                  "j.gif"]


def test_local_directory_recursive_case_insensitive(image_tree: Path) -> None:
    table = build_manifest(str(image_tree), shard_size=3)
    expected = sorted(f"file://{image_tree / name}" for name in IMAGES_IN_TREE)
    assert table.schema.equals(MANIFEST_SCHEMA)
    assert table["uri"].to_pylist() == expected
    assert table["image_id"].to_pylist() == [_sha1_id(u) for u in expected]
    assert table["size"].to_pylist() == [(image_tree / u[7:]).stat().st_size for u in expected]
    assert table["shard"].to_pylist() == [0, 0, 0, 1, 1, 1, 2, 2]


def test_image_id_independent_of_spelling(image_tree: Path, monkeypatch) -> None:
    monkeypatch.chdir(image_tree)
    absolute = str(image_tree / "a.jpg")
    assert image_id_for("a.jpg") == image_id_for(absolute) == image_id_for("file://" + absolute)
    assert image_id_for("s3a://bkt/x.jpg") == image_id_for("s3://bkt/x.jpg") == _sha1_id(
        "s3://bkt/x.jpg"
    )
    assert image_id_for("s3://bkt/x.jpg") != image_id_for("s3://bkt/X.jpg")


def test_glob_and_custom_extensions(image_tree: Path) -> None:
    globbed = build_manifest(str(image_tree / "c" / "**"))
    assert sorted(Path(u).name for u in globbed["uri"].to_pylist()) == [
        "d.Png", "e.webp", "g.BMP", "h.tif"
    ]
    only_png = build_manifest(str(image_tree), extensions=["PNG"])
    assert [Path(u).name for u in only_png["uri"].to_pylist()] == ["d.Png"]


def test_uri_list_file_dedupes_and_keeps_missing(image_tree: Path, tmp_path: Path) -> None:
    listing = tmp_path / "uris.txt"
    listing.write_text(
        f"# my images\n{image_tree}/a.jpg\n\nfile://{image_tree}/a.jpg\n"
        f"{image_tree}/missing.jpg\ns3://bkt/remote.png\n"
    )
    table = build_manifest(str(listing))
    assert table.num_rows == 3
    rows = {Path(r["uri"]).name: r for r in table.to_pylist()}
    assert rows["a.jpg"]["size"] == (image_tree / "a.jpg").stat().st_size
    assert rows["missing.jpg"]["size"] is None and rows["remote.png"]["size"] is None
    assert rows["remote.png"]["image_id"] == _sha1_id("s3://bkt/remote.png")


def test_saved_manifest_round_trip_and_reuse(image_tree: Path, tmp_path: Path) -> None:
    table = build_manifest(str(image_tree), shard_size=2)
    target = tmp_path / "run" / "manifest.parquet"
    target.parent.mkdir()
    save_manifest(table, str(target))
    assert load_manifest(str(target)).equals(table)
    assert build_manifest(str(target)).equals(table)  # an existing manifest is not relisted
    assert sorted(p.name for p in target.parent.iterdir()) == ["manifest.parquet"]


def test_missing_source_and_bad_manifest_raise_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="check the path"):
        build_manifest(str(tmp_path / "nope"))
    bad = tmp_path / "bad.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"uri": ["x"]}), bad)
    with pytest.raises(ValueError, match=r"columns \['image_id', 'size', 'shard'\] are missing"):
        load_manifest(str(bad))


def _put_keys(endpoint: str, bucket: str, keys: list[str]) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"img"), keys))


def test_s3_prefix_of_5000_keys_listed_in_pages(s3: dict) -> None:
    endpoint = s3["client_kwargs"]["endpoint_url"]
    images = [
        f"photos/cam{i % 12}/day{i % 5}/{i:05d}.{('jpg', 'JPG', 'png', 'Jpeg', 'webp')[i % 5]}"
        for i in range(5_000)
    ]
    images += [f"photos/top{i}.jpg" for i in range(3)]
    others = ["photos/readme.txt", "photos/cam0/meta.json", "photosX/outside.jpg", "other/a.jpg"]
    _put_keys(endpoint, "sod-bucket", images + others)

    fs, _ = open_filesystem("s3://sod-bucket/photos", s3)
    fs.connect()
    calls: Counter[str] = Counter()
    fs.s3.meta.events.register("before-call.s3", lambda model, **_: calls.update([model.name]))
    table = build_manifest("s3://sod-bucket/photos", storage_options=s3, shard_size=1000)

    expected = sorted(f"s3://sod-bucket/{key}" for key in images)
    assert table.num_rows == 5_003
    assert table["uri"].to_pylist() == expected
    assert table["image_id"].to_pylist() == [_sha1_id(u) for u in expected]
    assert set(table["size"].to_pylist()) == {3}
    assert table["shard"].to_pylist() == [i // 1000 for i in range(5_003)]
    # pages and the probes of one split of the key space: far from one request per object
    assert calls["ListObjectsV2"] <= 5_003 // 50, calls
    assert calls["GetObject"] == 0 and calls["HeadObject"] <= 1, calls


def test_flat_s3_prefix_listed_exactly_in_parallel_key_ranges(s3: dict) -> None:
    """A flat prefix (no folders) of numbered and hash-named keys, plus keys that sort at the
    edges of the split points, is listed exactly, with or without parallel key ranges (pages
    of 100 keys here, so that a walk splits after two pages of a small listing)."""
    from autosod.io.listing import list_s3

    endpoint = s3["client_kwargs"]["endpoint_url"]
    numbered = [f"flat/img_{i:06d}.jpg" for i in range(1200)]
    hashed = [f"flat/{hashlib.sha1(str(i).encode()).hexdigest()[:12]}.png" for i in range(500)]
    edges = ["flat/img_", "flat/img_000001.jpg.txt", "flat/\u00e9t\u00e9.jpg", "flat/ a.jpg",
             "flat/~z.jpg", "flat/img_0015.jpg", "flat/img_000001.jpg-copy.jpg", "flat.jpg",
             "flatter/x.jpg"]
    _put_keys(endpoint, "flat-bucket", numbered + hashed + edges)
    fs, path = open_filesystem("s3://flat-bucket/flat", s3)
    images = [k for k in numbered + hashed + edges
              if k.startswith("flat/") and k.endswith((".jpg", ".png"))]
    for max_walks in (1, 64):
        table, stats = list_s3(fs, path, (".jpg", ".png"), max_walks=max_walks, page_keys=100,
                               pages_before_split=2)
        uris = table["uri"].to_pylist()
        assert len(uris) == len(set(uris)) == len(images), (max_walks, stats)
        assert set(uris) == {f"s3://flat-bucket/{k}" for k in images}
        assert stats.keys == len(numbered) + len(hashed) + 7  # every key under flat/, once
        if max_walks == 1:
            assert stats.walks == 1 and stats.probes == 0 and stats.pages == 18
            assert stats.depth == 18
        else:  # parallel ranges; about one request per 1,000 keys, plus the probes
            assert stats.walks >= 10 and stats.depth <= 12, stats  # vs 18 round trips
            assert stats.pages <= stats.walks + stats.keys // 100 + 1, stats


def test_undecodable_file_name_left_out_not_fatal(image_tree: Path, caplog) -> None:
    bad = os.path.join(os.fsencode(image_tree), b"bad\xff.jpg")
    with open(bad, "wb") as handle:
        handle.write(b"x")
    (image_tree / "caf\u00e9 \u00fc.jpg").write_bytes(b"y")
    table = build_manifest(str(image_tree))
    names = [Path(u).name for u in table["uri"].to_pylist()]
    assert "caf\u00e9 \u00fc.jpg" in names and len(names) == len(IMAGES_IN_TREE) + 1
    assert "not valid UTF-8" in caplog.text


def test_io_imports_neither_torch_nor_ray() -> None:
    code = "import sys, autosod.io; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize(("uri", "stem"), [
    ("s3://bucket/dir/cat.01.jpg", "cat.01"),
    ("/data/horse001.png", "horse001"),
    ("file:///data/noext", "noext"),
    ("/data/.horse.jpg", ".horse"),
    ("/data/.jpg", ".jpg"),  # a dot-file keeps its name: exported as `.jpg.png`, never `.png`
    ("s3://bucket/dir/", "dir"),
])
def test_file_stem_one_rule_for_export_and_evaluation(uri: str, stem: str) -> None:
    """Export names PNGs and evaluation pairs rows by this one rule (they once disagreed on
    dot-files: export turned `.jpg` into an empty stem)."""
    from autosod.io.filesystem import file_stem

    assert file_stem(uri) == stem
