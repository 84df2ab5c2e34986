"""`autosod label` against the session test cluster (`--address`): `--limit`, a resume with another
head option refused, and GPU actors asked of a cluster that has no GPUs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ray_cluster import REPO_ROOT, RayCluster, ray_cluster  # noqa: F401 - session fixture
from typer.testing import CliRunner

from autosod.benchmarks.image_folder import write_image_folder
from autosod.io.store.mask_store import MaskStore
from autosod.io.store.schema import config_hash
from autosod.labeling.config import build_label_config
from autosod.labeling.job import store_config

AUTOSOD = Path(sys.executable).parent / "autosod"  # the installed console script
SIZE = 96
ARGS = ["--input-size", str(SIZE), "--batch-size", "2", "--no-progress"]


def _label(cluster: RayCluster, *args: str) -> subprocess.CompletedProcess:
    """`autosod label ARGS --address <the test cluster>` in its own process."""
    return subprocess.run([str(AUTOSOD), "label", *args, *ARGS, "--address",
                           cluster.gcs_address], env=cluster.client_env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def limited(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: F811
    """Label the first 2 of 5 images of a folder with `--limit 2`."""
    root = tmp_path_factory.mktemp("label-cli")
    write_image_folder(root / "images", 5, seed=9)
    images, store = str(root / "images"), str(root / "store")
    result = _label(ray_cluster, images, "--store", store, "--limit", "2")
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return {"root": root, "images": images, "store": store}


def test_limit_labels_only_the_first_images_of_the_manifest(limited: dict) -> None:
    store = MaskStore.open(limited["store"])
    manifest = store.load_manifest()
    assert manifest is not None and manifest.num_rows == 5
    assert store.committed_ids() == set(manifest["image_id"].to_pylist()[:2])
    summary = store.latest_summary()
    assert (summary["manifest_rows"], summary["selected_rows"], summary["processed"]) == (5, 2, 2)
    # the CPU plan on the 2-CPU test cluster: two single-threaded actors, no GPU (issue 17)
    assert (summary["ray"]["actor_resources"], summary["ray"]["num_actors"]) == ("cpu", 2)
    assert summary["ray"]["threads"] == 1 and summary["ray"]["num_gpus"] == 0.0


def test_resume_with_another_head_option_is_refused_naming_both_hashes(limited: dict) -> None:
    """Fails at opening the store, before Ray, so it runs in this process."""
    from autosod.cli import app

    written = MaskStore.open(limited["store"]).config_hash
    asked = config_hash(store_config(build_label_config(
        source=limited["images"], store=limited["store"], labeler={"input_size": SIZE},
        potnet={"k_low": 2})))
    result = CliRunner().invoke(app, ["label", limited["images"], "--store", limited["store"],
                                      "--k-low", "2", *ARGS])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autosod label: error:"), result.stderr
    assert written != asked and written in lines[0] and asked in lines[0], lines[0]
    after = MaskStore.open(limited["store"])
    assert after.config_hash == written and len(after.committed_ids()) == 2
    import ray

    assert not ray.is_initialized(), "the refusal started Ray in this process first"


def test_gpu_actors_on_a_cluster_without_gpus_fail_preflight(
    ray_cluster: RayCluster, limited: dict  # noqa: F811
) -> None:
    store = str(limited["root"] / "gpu-store")
    result = _label(ray_cluster, limited["images"], "--store", store, "--actors-on", "gpu")
    assert result.returncode == 2, f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("autosod label: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "actor_resources='gpu' but the Ray cluster has no GPU resources (" in errors[0]
    assert "'CPU': 2.0" in errors[0]  # the resources it has, in whatever order Ray lists them
    assert errors[0].endswith("use --actors-on cpu, or start Ray with --num-gpus")
    with pytest.raises(FileNotFoundError):  # planned before the store is created: nothing written
        MaskStore.open(store)
