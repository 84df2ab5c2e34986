"""How the labelling job lays its work on a cluster: the `ActorPlan` (no Ray here; `job.py`
passes what the cluster has).

- GPU clusters: one POTNet actor per GPU holding a few CPUs (the host side of the model, the
  head's launches, the copies); decode, encode and write run in CPU tasks on the other CPUs.
  The backbone runs in bf16 when asked (`bf16`, the default) and the GPUs are real ones (Ray
  reports their `accelerator_type`); logical GPUs on a CPU machine run fp32.
- CPU-only clusters: on each node the actors' threads (torch and BLAS, set explicitly in each
  actor) together use the cores that decoding and encoding do not need (`IO_SHARE` of the node);
  each actor gets `CPU_THREADS_PER_ACTOR` threads, so big nodes run several actors.

Ray's CPU reservations only decide what may run together; the threads are what use the cores.
`--actors` and `--actor-cpus` override the counts; the plan is printed in the run summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autosod.labeling.config import JobSettings

__all__ = [
    "ACTIVATION_BYTES_PER_INPUT_PIXEL",
    "ACTOR_BASE_BYTES",
    "CPU_THREADS_PER_ACTOR",
    "GPU_ACTOR_BASE_BYTES",
    "IO_SHARE",
    "MAP_BUDGET_BYTES",
    "ActorPlan",
    "PlanError",
    "plan_actors",
]

IO_SHARE = 0.125  # of a CPU node's cores kept for decode, encode and write tasks (measured ~1/8)
# threads of each CPU actor when the plan chooses: single-threaded actors never wait for each
# other's threads, while one actor's intra-op threads stall whenever a decode task or any other
# process takes one of their cores (a 2-thread elementwise op on a busy 2-core node took 15-47 ms
# instead of 0.2-0.7 ms); docs/benchmarks.md
CPU_THREADS_PER_ACTOR = 1
GPU_ACTOR_CPUS = 2.0  # at most this many CPUs reserved per GPU actor (and threads)
# an actor's memory (docs/benchmarks.md, "Actor memory"): Python, torch and the model (0.8 GB
# measured for EfficientNet-Lite0 on CPU; a GPU actor adds the CUDA context on the host), the
# backbone's activations of a batch (280 B per input pixel measured on CPU: 16 x 368 x 368 images
# peak at +0.6 GB), and the full-size maps it makes (float32 map while upsampling, then uint8 +
# packed bits: at most 5 bytes per map byte within the budget)
ACTOR_BASE_BYTES = 1 << 30
GPU_ACTOR_BASE_BYTES = 3 << 30  # not measured yet: no GPU was lent for issue 17
ACTIVATION_BYTES_PER_INPUT_PIXEL = 300
MAP_BUDGET_BYTES = 64 << 20  # full-size maps per batch made by the actor (the rest: in encode)
_UPSAMPLE_BYTES_PER_MAP_BYTE = 5


class PlanError(ValueError):
    """The asked-for actors cannot run on this cluster (the message says why and what to do)."""


@dataclass(frozen=True)
class ActorPlan:
    """How the POTNet actor pool and the CPU tasks are scheduled, and how Ray was reached."""

    how: str  # "joined ..." or "started single-node Ray ..."
    actor_resources: str  # "gpu" or "cpu" (resolved from "auto")
    num_actors: int
    num_gpus: float  # per actor
    num_cpus: float  # per actor: Ray's reservation
    threads: int  # torch and BLAS threads each actor sets for itself
    task_cpus: float  # Ray's reservation of each decode, encode and write task
    memory_bytes: int  # per actor: base + its input batch + its full-size maps
    map_budget_bytes: int  # full-size maps per batch made on the actor's device
    precision: str  # "bf16" or "fp32": the backbone's precision (in the store's config hash)
    cluster: dict[str, float]

    def describe(self) -> str:
        """One line for logs and the run summary."""
        gpu = f"{self.num_gpus:g} GPU, " if self.num_gpus else ""
        return (f"{self.num_actors} x {self.actor_resources} actor ({gpu}{self.num_cpus:g} CPU "
                f"reserved, {self.threads} thread(s), {self.memory_bytes / 2**30:.1f} GiB, "
                f"{self.precision}); decode/encode/write tasks {self.task_cpus:g} CPU each")


def plan_actors(config: JobSettings, *, how: str, cluster: Mapping[str, float],
                node_cpus: Sequence[float]) -> ActorPlan:
    """The plan for `config` on a cluster with `cluster` totals (CPU, GPU, memory, and Ray's
    `accelerator_type:*` keys) and `node_cpus` (the CPUs of each node that has any)."""
    totals = {k: float(v) for k, v in cluster.items() if k in ("CPU", "GPU", "memory")}
    gpus, cpus = totals.get("GPU", 0.0), totals.get("CPU", 0.0)
    resources = config.actor_resources
    if resources == "auto":
        resources = "gpu" if gpus >= 1 else "cpu"
    if resources == "gpu" and gpus < 1:
        raise PlanError(f"actor_resources='gpu' but the Ray cluster has no GPU resources "
                        f"({totals}); use --actors-on cpu, or start Ray with --num-gpus")
    if cpus <= 0:
        raise PlanError(f"the Ray cluster has no CPUs ({totals}); the decode and encode tasks "
                        "need some: start the worker nodes with --num-cpus")
    if resources == "gpu":
        return _gpu_plan(config, how, totals, cluster)
    return _cpu_plan(config, how, totals, [c for c in node_cpus if c > 0] or [cpus])


def _memory(config: JobSettings, base: int, budget: int) -> int:
    pixels = config.batch_size * config.input_size ** 2
    return base + ACTIVATION_BYTES_PER_INPUT_PIXEL * pixels + _UPSAMPLE_BYTES_PER_MAP_BYTE * budget


def _gpu_plan(config: JobSettings, how: str, totals: dict[str, float],
              cluster: Mapping[str, float]) -> ActorPlan:
    gpus, cpus = totals["GPU"], totals["CPU"]
    num_actors = config.num_actors or max(1, int(gpus))
    actor_cpus = config.actor_cpus or min(GPU_ACTOR_CPUS, cpus / max(gpus, 1) / 2)
    left = cpus - num_actors * actor_cpus
    if left <= 0:
        raise PlanError(f"{num_actors} GPU actors x {actor_cpus:g} CPUs leave no CPU of the "
                        f"cluster's {cpus:g} for decoding; lower --actor-cpus or --actors")
    real_gpus = any(key.startswith("accelerator_type:") for key in cluster)
    bf16 = config.bf16 and real_gpus and config.device != "cpu"
    return ActorPlan(
        how=how, actor_resources="gpu", num_actors=num_actors, num_gpus=1.0,
        num_cpus=actor_cpus, threads=max(1, math.ceil(actor_cpus)),
        task_cpus=min(1.0, left / 2),
        memory_bytes=_memory(config, GPU_ACTOR_BASE_BYTES, MAP_BUDGET_BYTES),
        map_budget_bytes=MAP_BUDGET_BYTES, precision="bf16" if bf16 else "fp32",
        cluster=totals)


def _cpu_plan(config: JobSettings, how: str, totals: dict[str, float],
              node_cpus: list[float]) -> ActorPlan:
    node = max(node_cpus)  # the plan is for the largest node; smaller ones get fewer actors
    io_cpus = node * IO_SHARE
    actor_cores = node - io_cpus
    if config.actor_cpus:
        per_node = max(1, int(actor_cores // config.actor_cpus))
    else:
        per_node = max(1, round(actor_cores / CPU_THREADS_PER_ACTOR))
    num_actors = config.num_actors or per_node * len(node_cpus)
    per_node = math.ceil(num_actors / len(node_cpus))
    actor_cpus = config.actor_cpus or actor_cores / per_node
    if per_node * actor_cpus > actor_cores + 1e-9:
        raise PlanError(f"{per_node} actor(s) x {actor_cpus:g} CPUs per node leave less than "
                        f"{io_cpus:g} of a node's {node:g} CPUs for decoding and encoding; use "
                        f"at most {actor_cores / per_node:g} --actor-cpus or fewer --actors")
    return ActorPlan(
        how=how, actor_resources="cpu", num_actors=num_actors, num_gpus=0.0,
        num_cpus=actor_cpus, threads=max(1, round(actor_cpus)),
        task_cpus=min(1.0, io_cpus / 2),
        memory_bytes=_memory(config, ACTOR_BASE_BYTES, MAP_BUDGET_BYTES),
        map_budget_bytes=MAP_BUDGET_BYTES, precision="fp32", cluster=totals)
