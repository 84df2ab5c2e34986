"""A real single-node Ray cluster for tests: `ray start --head --block` on free loopback ports.

The cluster has its own short temp dir and its own token file (token authentication enabled the way
`ray start --head` enables it by default: a token is available, `RAY_AUTH_MODE` unset). Teardown
stops only the processes this fixture started (its own process group), never `ray stop`, which
would stop every Ray cluster on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port

__all__ = ["RayCluster", "ray_cluster", "start_ray_cluster"]

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class RayCluster:
    """Addresses and the environment a client needs to reach the test cluster."""

    gcs_address: str  # "127.0.0.1:PORT" for ray.init(address=...)
    dashboard_url: str  # "http://127.0.0.1:PORT" for `ray job submit --address`
    temp_dir: Path
    token_path: Path
    client_env: dict[str, str]  # os.environ plus RAY_AUTH_MODE=token and the token path

    def submit_command(self, entrypoint: list[str], *,
                       runtime_env_json: str | None = None) -> list[str]:
        """`ray job submit --working-dir . [--runtime-env-json J] -- ENTRYPOINT` (this cluster)."""
        cmd = [str(VENV_BIN / "ray"), "job", "submit", "--address", self.dashboard_url,
               "--working-dir", str(REPO_ROOT)]
        if runtime_env_json:
            cmd += ["--runtime-env-json", runtime_env_json]
        return [*cmd, "--", *entrypoint]

    def submit(self, entrypoint: list[str], *, runtime_env_json: str | None = None,
               timeout_s: float = 600) -> subprocess.CompletedProcess:
        """Submit a job and wait for it (the CLI tails its logs); returns the finished process."""
        return subprocess.run(self.submit_command(entrypoint, runtime_env_json=runtime_env_json),
                              env=self.client_env, cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=timeout_s, check=False)

    def list_actors(self) -> list[dict]:
        """Every actor of this cluster, dead ones included, from Ray's state API
        (`ray list actors --detail --format json`): `actor_id`, `class_name`, `state`, `pid`,
        `num_restarts`, ..."""
        res = subprocess.run([str(VENV_BIN / "ray"), "list", "actors", "--address",
                              self.dashboard_url, "--detail", "--format", "json",
                              "--limit", "10000"], env=self.client_env, capture_output=True,
                             text=True, timeout=60, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"`ray list actors` failed ({res.returncode}): {res.stderr[-2000:]}")
        if res.stdout.strip() == "No resource in the cluster":  # what it prints for none
            return []
        return json.loads(res.stdout)


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    # `python` in a job's entrypoint resolves to this venv, as in an activated venv.
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _wait_ready(cluster: RayCluster, proc: subprocess.Popen, timeout_s: float) -> None:
    """Poll `ray job list` (authenticated) until the job server answers."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`ray start --head` exited with {proc.returncode}: {last}")
        res = subprocess.run([str(VENV_BIN / "ray"), "job", "list", "--address",
                              cluster.dashboard_url], env=cluster.client_env,
                             capture_output=True, text=True, timeout=60, check=False)
        if res.returncode == 0:
            return
        last = res.stderr[-500:]
        time.sleep(1.0)
    raise TimeoutError(f"Ray job server at {cluster.dashboard_url} not ready in {timeout_s} s: "
                       f"{last}")


def _stop(proc: subprocess.Popen, temp_dir: Path) -> None:
    """SIGTERM the process group this fixture started, then SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGTERM, 8), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(1.0)  # children of the group get a moment after the leader exits
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


def start_ray_cluster(num_cpus: int = 2, num_gpus: int = 0,
                      timeout_s: float = 120) -> tuple[RayCluster, subprocess.Popen]:
    """Start `ray start --head --block` in its own process group; return the cluster and process."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: unix socket paths
    token_path = temp_dir / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    head_env = _base_env() | {"RAY_AUTH_TOKEN_PATH": str(token_path)}
    client_env = head_env | {"RAY_AUTH_MODE": "token"}
    gcs_port, dash_port = free_port(), free_port()
    ports = {"--ray-client-server-port": free_port(), "--dashboard-agent-listen-port": free_port(),
             "--dashboard-agent-grpc-port": free_port(), "--runtime-env-agent-port": free_port(),
             "--metrics-export-port": free_port(), "--node-manager-port": free_port(),
             "--object-manager-port": free_port()}
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(gcs_port), "--dashboard-host", "127.0.0.1",
           "--dashboard-port", str(dash_port), "--temp-dir", str(temp_dir),
           "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus), "--disable-usage-stats"]
    for flag, port in ports.items():
        cmd += [flag, str(port)]
    log = open(temp_dir / "ray_start.log", "w")  # noqa: SIM115 - lives as long as the cluster
    proc = subprocess.Popen(cmd, env=head_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    cluster = RayCluster(gcs_address=f"127.0.0.1:{gcs_port}",
                         dashboard_url=f"http://127.0.0.1:{dash_port}", temp_dir=temp_dir,
                         token_path=token_path, client_env=client_env)
    try:
        _wait_ready(cluster, proc, timeout_s)
    except BaseException:
        _stop(proc, temp_dir)
        raise
    return cluster, proc


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A session-wide test cluster (2 CPUs, token auth); stopped at the end of the session."""
    cluster, proc = start_ray_cluster()
    try:
        yield cluster
    finally:
        _stop(proc, cluster.temp_dir)
