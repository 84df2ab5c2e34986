"""The actor plan on cluster shapes (no Ray: the plan is a function of what the cluster has),
the threads an actor sets for itself, and the store's config hash (precision in, device out)."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from autosod.io.store.schema import config_hash
from autosod.labeling.config import LabelerConfig, build_label_config
from autosod.labeling.job import store_config
from autosod.labeling.resources import IO_SHARE, PlanError, plan_actors
from autosod.labeling.summary import format_summary

# The default labelling config's hash (Lite2 at 384 px since issue 19, test_backbone_config.py):
# recording precision (issue 16) left it unchanged, so CPU stores resume.
DEFAULT_STORE_HASH = "8662a3db55fb923f"


def _plan(cluster: dict, node_cpus: list | None = None, **options):
    config = build_label_config(source="s", store="t", **options)
    return plan_actors(config, how="test", cluster=cluster,
                       node_cpus=node_cpus if node_cpus is not None else [cluster["CPU"]])


@pytest.mark.parametrize("cores", [2, 4, 16, 64])
def test_cpu_actors_threads_use_the_cores_decoding_does_not_need(cores: int) -> None:
    plan = _plan({"CPU": float(cores), "memory": 8e9})
    assert plan.actor_resources == "cpu" and plan.num_gpus == 0 and plan.precision == "fp32"
    assert plan.num_actors * plan.threads == round(cores * (1 - IO_SHARE)), plan
    assert plan.num_actors * plan.num_cpus + plan.task_cpus <= cores, "no room left for tasks"
    assert plan.threads > 1 or cores < 8 or plan.num_actors > 1, plan


def test_cpu_plan_per_node_on_several_nodes() -> None:
    one = _plan({"CPU": 16.0})
    three = _plan({"CPU": 48.0}, node_cpus=[16.0, 16.0, 16.0, 0.0])  # + a head without CPUs
    assert three.num_actors == 3 * one.num_actors
    assert (three.num_cpus, three.threads) == (one.num_cpus, one.threads)


def test_gpu_plan_one_actor_per_gpu_with_a_few_cpus_and_bf16_on_real_gpus() -> None:
    real = {"CPU": 64.0, "GPU": 8.0, "accelerator_type:H200": 8.0}
    plan = _plan(real)
    assert (plan.actor_resources, plan.num_actors, plan.num_gpus) == ("gpu", 8, 1.0)
    assert 1 <= plan.num_cpus <= 2 and plan.task_cpus == 1.0
    assert plan.precision == "bf16"
    assert _plan(real, bf16=False).precision == "fp32"
    assert _plan(real, labeler={"device": "cpu"}).precision == "fp32"
    logical = _plan({"CPU": 2.0, "GPU": 1.0})  # ray start --num-gpus on a CPU machine
    assert logical.actor_resources == "gpu" and logical.precision == "fp32"
    assert logical.num_cpus + logical.task_cpus <= 2, "decode tasks must fit beside the actor"
    assert _plan(real, actor_resources="cpu").actor_resources == "cpu"


def test_overrides_and_plans_that_cannot_run() -> None:
    plan = _plan({"CPU": 2.0}, num_actors=3)
    assert plan.num_actors == 3 and plan.threads == 1 and 3 * plan.num_cpus < 2
    plan = _plan({"CPU": 16.0}, actor_cpus=1.0)
    assert (plan.num_actors, plan.num_cpus, plan.threads) == (14, 1.0, 1)
    with pytest.raises(PlanError, match=r"at most 1\.75 --actor-cpus"):
        _plan({"CPU": 2.0}, actor_cpus=2.0)
    with pytest.raises(PlanError, match="leave no CPU"):
        _plan({"CPU": 4.0, "GPU": 4.0}, actor_cpus=1.0)
    with pytest.raises(PlanError, match="no GPU resources"):
        _plan({"CPU": 4.0}, actor_resources="gpu")


def test_memory_reservation_covers_the_batch_and_its_maps() -> None:
    """Measured on CPU (docs/benchmarks.md): the loaded actor holds 0.8 GB, and a batch of 16
    default inputs peaks at 1.43 GB, whether its maps are made on the actor or not."""
    plan = _plan({"CPU": 2.0}, batch_size=16)
    assert plan.memory_bytes >= 1.43e9 + plan.map_budget_bytes
    bigger = _plan({"CPU": 2.0}, batch_size=64)
    assert bigger.memory_bytes - plan.memory_bytes >= 3 * 0.6e9, "activations grow with B"


def test_the_plan_is_in_the_printed_summary() -> None:
    plan = _plan({"CPU": 2.0})
    text = format_summary({"source": "s", "store": "t", "ray": {"plan": plan.describe()}})
    assert plan.describe() in text and "CPU reserved" in text


def test_an_actor_sets_its_own_threads() -> None:
    from autosod.labeling.actor import set_threads

    before = torch.get_num_threads()
    blas = {i["user_api"]: i["num_threads"] for i in threadpool_info()}
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        assert all(i["num_threads"] == 1 for i in threadpool_info()), threadpool_info()
        set_threads(2)
        assert torch.get_num_threads() == 2
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {2}
    finally:
        torch.set_num_threads(before)
        threadpool_limits(limits=blas)


def test_store_hash_covers_precision_not_device() -> None:
    config = build_label_config(source="s", store="t")
    assert config_hash(store_config(config)) == DEFAULT_STORE_HASH, "CPU stores must resume"
    assert config_hash(store_config(config, "fp32")) == DEFAULT_STORE_HASH
    for device in ("cpu", "cuda", "cuda:3"):
        other = build_label_config(source="s", store="t", labeler={"device": device})
        assert config_hash(store_config(other)) == DEFAULT_STORE_HASH, device
    assert config_hash(store_config(config, "bf16")) != DEFAULT_STORE_HASH
    assert store_config(config, "bf16")["precision"] == "bf16"
    changed = build_label_config(source="s", store="t", potnet={"k_low": 3})
    assert config_hash(store_config(changed)) != DEFAULT_STORE_HASH
    assert store_config(config)["labeler"]["input_size"] == LabelerConfig().input_size
