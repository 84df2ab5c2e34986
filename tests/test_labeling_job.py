"""End-to-end: `ray job submit --working-dir . -- python jobs/label.py ...` on a real local cluster
(`ray start --head` with token authentication), on a local folder and on S3 (moto on loopback).

Each scenario runs the job once in a class-scoped fixture; the tests then check small things.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ray_cluster import RayCluster, ray_cluster  # noqa: F401 - session fixture

from autosod.benchmarks.image_folder import CORRUPT_FILES, write_image_folder
from autosod.io.manifest import image_id_for
from autosod.io.mask_codec import decode_mask_png
from autosod.io.store.mask_store import MaskStore
from autosod.store_tools.export import export_store
from autosod.store_tools.preview import write_preview
from autosod.store_tools.status import store_status

GOOD_IMAGES = 150
JOB_ARGS = ["--input-size", "128", "--batch-size", "16", "--no-progress"]


def _job_output(result) -> str:
    return (f"rc={result.returncode}\nSTDOUT:\n{result.stdout[-4000:]}\n"
            f"STDERR:\n{result.stderr[-3000:]}")


@pytest.fixture(scope="class")
def local_run(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: F811
    """Label a generated folder (good + corrupt files) once, then rerun the same command."""
    root = tmp_path_factory.mktemp("label-local")
    images, store = root / "images", root / "store"
    good = write_image_folder(images, GOOD_IMAGES, seed=1, corrupt=True)
    entry = ["python", "jobs/label.py", str(images), "--store", str(store), *JOB_ARGS]
    first = ray_cluster.submit(entry)
    assert first.returncode == 0, _job_output(first)
    first_summary = MaskStore.open(str(store)).latest_summary()
    rerun = ray_cluster.submit(entry)
    assert rerun.returncode == 0, _job_output(rerun)
    return {"images": images, "store": store, "good": good, "first": first,
            "summary": first_summary, "rerun": rerun,
            "rerun_summary": MaskStore.open(str(store)).latest_summary()}


class TestLocalClusterJob:
    def test_one_committed_row_per_image(self, local_run: dict) -> None:
        table = MaskStore.open(str(local_run["store"])).read(["image_id", "uri", "status"])
        ids = table["image_id"].to_pylist()
        expected = {image_id_for(str(p)) for p in local_run["good"]}
        expected |= {image_id_for(str(local_run["images"] / n)) for n in CORRUPT_FILES}
        assert len(ids) == len(set(ids)), "an image id appears more than once in the store"
        assert set(ids) == expected, f"store ids differ from the source: {len(ids)} vs " \
                                     f"{len(expected)}"

    def test_summary_agrees_with_store(self, local_run: dict) -> None:
        summary = local_run["summary"]
        store = MaskStore.open(str(local_run["store"]))
        counts = store.status_counts()
        assert summary["counts"] == counts, f"summary {summary['counts']} vs store {counts}"
        assert summary["processed"] == GOOD_IMAGES + len(CORRUPT_FILES)
        assert summary["store_rows"] == sum(counts.values())
        assert summary["ray"]["how"].startswith("joined the job's cluster"), summary["ray"]
        assert summary["images_per_s"] > 0
        assert set(summary["stage_s"]) == {"decode", "label", "encode", "write"}
        assert abs(sum(summary["stage_share"].values()) - 1.0) < 1e-6
        assert summary["versions"]["ray"].startswith("2.60"), summary["versions"]
        assert summary["config"]["labeler"]["input_size"] == 128

    def test_summary_is_printed(self, local_run: dict) -> None:
        out = local_run["first"].stdout
        assert "processed this run" in out and "images per second" in out, _job_output(
            local_run["first"])

    def test_corrupt_files_counted_by_reason(self, local_run: dict) -> None:
        table = MaskStore.open(str(local_run["store"])).read(["uri", "status", "error",
                                                              "mask_png"])
        by_name = {posixpath.basename(u): (s, e, m) for u, s, e, m in zip(
            *(table[c].to_pylist() for c in ("uri", "status", "error", "mask_png")), strict=True)}
        for name, reason in CORRUPT_FILES.items():
            status, error, mask = by_name[name]
            assert status == reason, f"{name}: status {status!r}, expected {reason!r}"
            assert error and mask is None, f"{name}: error {error!r}, mask {mask is not None}"
        expected = Counter(CORRUPT_FILES.values()) | Counter({"ok": GOOD_IMAGES})
        assert local_run["summary"]["counts"] == dict(expected)
        assert set(local_run["summary"]["error_samples"]) == set(CORRUPT_FILES.values())

    def test_masks_have_the_original_size(self, local_run: dict) -> None:
        store = MaskStore.open(str(local_run["store"]))
        table = store.read(["uri", "width", "height", "status", "mask_png", "saliency_png"])
        rows = [r for r in table.to_pylist() if r["status"] == "ok"][:10]
        assert rows, "no ok rows"
        for row in rows:
            with Image.open(row["uri"].removeprefix("file://")) as image:
                size = image.size
            mask = decode_mask_png(row["mask_png"])
            assert (row["width"], row["height"]) == size
            assert mask.shape == (size[1], size[0]), f"{row['uri']}: mask {mask.shape} vs {size}"
            assert 0 < mask.mean() < 1, f"{row['uri']}: mask is all one value"

    def test_rerun_skips_everything_and_adds_nothing(self, local_run: dict) -> None:
        summary = local_run["rerun_summary"]
        assert summary["processed"] == 0, summary["counts"]
        assert summary["skipped_committed"] == GOOD_IMAGES + len(CORRUPT_FILES)
        assert summary["store_rows"] == GOOD_IMAGES + len(CORRUPT_FILES)

    def test_status_reports_nothing_remaining(self, local_run: dict) -> None:
        status = store_status(str(local_run["store"]))
        assert status["done"] == GOOD_IMAGES
        assert status["failed"] == dict(Counter(CORRUPT_FILES.values()))
        assert status["remaining"] == 0 and status["manifest_rows"] == status["committed"]

    def test_export_writes_one_png_per_ok_image(self, local_run: dict, tmp_path: Path) -> None:
        result = export_store(str(local_run["store"]), str(tmp_path / "masks"))
        files = sorted((tmp_path / "masks").glob("*.png"))
        assert result.written == GOOD_IMAGES == len(files)
        assert {f.stem for f in files} == {p.stem for p in local_run["good"]}
        first = local_run["good"][0]
        with Image.open(first) as image, Image.open(tmp_path / "masks" / f"{first.stem}.png") as m:
            assert m.size == image.size and m.mode == "L"
            assert set(np.unique(np.asarray(m)).tolist()) <= {0, 255}

    def test_preview_grid_and_index(self, local_run: dict, tmp_path: Path) -> None:
        result = write_preview(str(local_run["store"]), tmp_path / "preview", max_images=9)
        assert result.shown_ok == 9 and result.shown_failed == len(CORRUPT_FILES)
        with Image.open(result.grid_png) as grid:
            assert grid.width > 600 and grid.height > 600, grid.size
        html = result.index_html.read_text()
        assert "preview.png" in html and "not_an_image" in html


@pytest.fixture(scope="class")
def s3_run(ray_cluster: RayCluster, s3_server: str,  # noqa: F811
           tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Upload a generated folder to a moto bucket and label it into an s3:// store."""
    import boto3
    import s3fs

    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": s3_server}}
    bucket = "autosod-label-e2e"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing"
                 ).create_bucket(Bucket=bucket)
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    local = tmp_path_factory.mktemp("label-s3") / "images"
    good = write_image_folder(local, 40, seed=2, corrupt=True)
    fs.put(str(local) + "/", f"{bucket}/src/", recursive=True)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server}
    source, store = f"s3://{bucket}/src", f"s3://{bucket}/store"
    result = ray_cluster.submit(
        ["python", "jobs/label.py", source, "--store", store, "--endpoint-url", s3_server,
         *JOB_ARGS], runtime_env_json=json.dumps({"env_vars": env}))
    assert result.returncode == 0, _job_output(result)
    return {"good": good, "store": store, "options": options, "result": result}


class TestS3ClusterJob:
    def test_one_committed_row_per_image(self, s3_run: dict) -> None:
        store = MaskStore.open(s3_run["store"], storage_options=s3_run["options"])
        table = store.read(["image_id", "uri", "status"])
        ids = table["image_id"].to_pylist()
        assert len(ids) == len(set(ids)) == 40 + len(CORRUPT_FILES)
        assert all(u.startswith("s3://autosod-label-e2e/src/") for u in table["uri"].to_pylist())
        expected = {f"s3://autosod-label-e2e/src/{p.name}" for p in s3_run["good"]}
        assert expected <= set(table["uri"].to_pylist())

    def test_summary_agrees_with_store(self, s3_run: dict) -> None:
        store = MaskStore.open(s3_run["store"], storage_options=s3_run["options"])
        summary = store.latest_summary()
        assert summary is not None, "no run summary saved in the S3 store"
        assert summary["counts"] == store.status_counts()
        assert summary["counts"]["ok"] == 40
        assert summary["store"] == s3_run["store"]
        assert summary["config"]["storage_options"]["client_kwargs"]["endpoint_url"]

    def test_manifest_saved_and_nothing_remaining(self, s3_run: dict) -> None:
        status = store_status(s3_run["store"], storage_options=s3_run["options"])
        assert status["manifest_rows"] == 40 + len(CORRUPT_FILES)
        assert status["remaining"] == 0
