"""Shared fixtures: a real moto S3 server on loopback (what s3fs's own tests use)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"moto server did not listen on 127.0.0.1:{port} within {timeout_s} s")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server in its own process on a free loopback port; yields its endpoint URL.

    A separate process (not a thread) so that Ray workers and job subprocesses reach it too.
    """
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, timeout_s=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """Fake credentials and the endpoint in the environment, a clean server, fresh s3fs cache.

    Yields the `storage_options` that autosod's I/O functions take for this server.
    """
    import requests
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    requests.post(f"{s3_server}/moto-api/reset", timeout=10)
    s3fs.S3FileSystem.clear_instance_cache()
    yield {"client_kwargs": {"endpoint_url": s3_server}}
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def shared_data() -> Path:
    """`../shared/data` beside the checkout; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real development data not found at {SHARED_DATA}")
    return SHARED_DATA


def has_gpu() -> bool:
    """True when CuPy imports and sees a CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Test clusters are single-node and must talk over loopback only: without this, Ray replaces
# 127.0.0.1 with the host's interface address (`resolve_ip_for_localhost`). The variable's name
# says Windows/OSX, but on any platform it makes Ray keep every address on 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
