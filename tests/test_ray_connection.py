"""`autosod.ray_connection`: the single-node Ray it starts keeps idle task workers alive."""

from __future__ import annotations

import os
import time

import ray

from autosod.ray_connection import SOFT_LIMIT_ENV, ray_session, workers_soft_limit


def test_single_node_ray_reuses_idle_task_workers_while_actors_hold_the_cpus() -> None:
    # the labelling job's shape on any node: one actor per CPU holding 0.875 of it, and
    # fractional-CPU tasks in between; Ray's default kept one worker per CPU, actors counted,
    # so each task after an idle second started a new Python process
    cpus = os.cpu_count() or 1
    with ray_session() as how:
        assert how.startswith("started single-node Ray")
        assert os.environ.get(SOFT_LIMIT_ENV) is None  # set only while Ray starts

        @ray.remote(num_cpus=0.875)
        class Holder:
            def pid(self) -> int:
                return os.getpid()

        @ray.remote(num_cpus=0.125)
        def task_pid() -> int:
            return os.getpid()

        holders = [Holder.remote() for _ in range(cpus)]
        assert len(set(ray.get([h.pid.remote() for h in holders]))) == cpus
        pids = []
        for _ in range(3):
            pids.append(ray.get(task_pid.remote()))
            time.sleep(2.5)  # Ray kills workers idle for more than a second beyond its limit
    assert len(set(pids)) == 1, f"a new worker process per task: {pids}"


def test_workers_soft_limit_leaves_room_beyond_one_worker_per_cpu() -> None:
    assert workers_soft_limit(2) > 2 + 2  # two actors and more than two task workers
    assert workers_soft_limit(64) > 64
