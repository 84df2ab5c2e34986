"""The labelling driver's decisions, without a cluster: the saved manifest reused or relisted,
and the actor plan for a cluster's resources."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from autosod.benchmarks.image_folder import write_image_folder
from autosod.io.manifest import image_id_for
from autosod.io.store.mask_store import MaskStore
from autosod.labeling.config import LabelJobConfig
from autosod.labeling.job import ActorPlan, PreflightError, _manifest, _plan_actors


def test_manifest_is_reused_for_the_same_source_and_relisted_for_another(
    tmp_path: Path,
) -> None:
    first_images = write_image_folder(tmp_path / "a", 4, seed=7)
    other_images = write_image_folder(tmp_path / "b", 3, seed=8)
    store_uri = str(tmp_path / "store")
    config = LabelJobConfig(source=str(tmp_path / "a"), store=store_uri)
    listed = _manifest(config, MaskStore.open(store_uri, config={"test": 1}))
    assert set(listed["image_id"].to_pylist()) == {image_id_for(str(p)) for p in first_images}
    # An image added after the first listing: a rerun on the same source must not see it
    # (resume works from the saved manifest), a relisting would.
    shutil.copy(first_images[0], tmp_path / "a" / "late.jpg")
    reused = _manifest(config, MaskStore.open(store_uri))
    assert reused.equals(listed), "the saved manifest was not reused for the same source"
    other = LabelJobConfig(source=str(tmp_path / "b"), store=store_uri)
    relisted = _manifest(other, MaskStore.open(store_uri))
    expected = {image_id_for(str(p)) for p in other_images}
    assert set(relisted["image_id"].to_pylist()) == expected, "another source was not relisted"
    saved = MaskStore.open(store_uri).load_manifest()
    assert saved is not None and set(saved["image_id"].to_pylist()) == expected, (
        "the relisted manifest was not saved in place of the old one")


def _job(**options: object) -> LabelJobConfig:
    return LabelJobConfig(source="images", store="store", **options)


@pytest.mark.parametrize(("cpus", "actors"), [(1.0, 1), (2.0, 1), (7.0, 1), (8.0, 2),
                                              (17.0, 4)])
def test_cpu_plan_runs_one_actor_per_four_cpus(cpus: float, actors: int) -> None:
    cluster = {"CPU": cpus, "GPU": 2.0, "memory": 1e9}
    plan = _plan_actors(_job(actor_resources="cpu"), "joined", cluster)
    assert plan == ActorPlan("joined", "cpu", actors, 0.0, 1.0, cluster)


def test_auto_plan_without_gpus_is_the_cpu_plan_and_actors_can_be_set() -> None:
    cluster = {"CPU": 16.0}
    assert _plan_actors(_job(), "joined", cluster) == ActorPlan("joined", "cpu", 4, 0.0, 1.0,
                                                               cluster)
    assert _plan_actors(_job(actor_resources="cpu", num_actors=3), "j", cluster).num_actors == 3


def test_gpu_plan_runs_one_actor_per_gpu() -> None:
    cluster = {"CPU": 16.0, "GPU": 3.0}
    for resources in ("gpu", "auto"):
        plan = _plan_actors(_job(actor_resources=resources), "joined", cluster)
        assert plan == ActorPlan("joined", "gpu", 3, 1.0, 1.0, cluster), resources


def test_gpu_actors_on_a_cluster_without_gpus_is_a_preflight_error() -> None:
    message = ("actor_resources='gpu' but the Ray cluster has no GPU resources "
               "({'CPU': 2.0, 'GPU': 0.0}); use --actors-on cpu, or start Ray with --num-gpus")
    with pytest.raises(PreflightError) as caught:
        _plan_actors(_job(actor_resources="gpu"), "joined", {"CPU": 2.0, "GPU": 0.0})
    assert str(caught.value) == message
