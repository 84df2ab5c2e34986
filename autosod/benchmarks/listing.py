"""S3 listing of a flat prefix: `python jobs/benchmark.py list-s3 --keys N`.

N objects under one flat prefix (numbered or hash-named keys) on an S3 endpoint (a moto server
started here when none is given), listed three ways in the same process: `listing.list_s3` with
parallel key ranges (the manifest's listing), the same walk with one range (sequential pages),
and s3fs's `find` (the generic fsspec listing). Best of `repeats`; requests counted by botocore.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["run_listing_benchmark"]

_BUCKET = "listing-bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError("moto server did not start")


def _keys(count: int, naming: str) -> list[str]:
    if naming == "numbered":
        return [f"flat/img_{i:08d}.jpg" for i in range(count)]
    return [f"flat/{hashlib.sha1(str(i).encode()).hexdigest()[:16]}.jpg" for i in range(count)]


def _best(repeats: int, run: Any) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = run()
        best = min(best, time.perf_counter() - start)
    return best, value


def run_listing_benchmark(*, keys: int, naming: str, repeats: int,
                          endpoint_url: str | None) -> dict[str, Any]:
    """Seconds, keys/s and requests of each listing (see the module docstring)."""
    import boto3
    import s3fs

    from autosod.io.listing import list_s3

    proc = None
    if endpoint_url is None:
        proc, endpoint_url = _start_moto()
    try:
        client = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        client.create_bucket(Bucket=_BUCKET)
        names = _keys(keys, naming)
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda k: client.put_object(Bucket=_BUCKET, Key=k, Body=b""), names))
        fs = s3fs.S3FileSystem(key="bench", secret="bench", skip_instance_cache=True,
                               client_kwargs={"endpoint_url": endpoint_url})
        fs.connect()
        calls: Counter[str] = Counter()
        fs.s3.meta.events.register("before-call.s3", lambda model, **_: calls.update([model.name]))
        path, exts = f"{_BUCKET}/flat", (".jpg",)
        figures: dict[str, Any] = {"keys": keys, "naming": naming, "endpoint": endpoint_url}
        runs = {"parallel_ranges": lambda: list_s3(fs, path, exts),
                "one_range": lambda: list_s3(fs, path, exts, max_walks=1),
                "s3fs_find": lambda: (fs.find(path, refresh=True), None)}
        for name, run in runs.items():
            calls.clear()
            seconds, (found, stats) = _best(repeats, run)
            figures[name] = {"seconds": round(seconds, 3), "found": len(found),
                             "keys_per_s": round(keys / seconds),
                             "requests_per_run": calls["ListObjectsV2"] // repeats}
            if stats is not None:  # round trips on the critical path: what S3 latency costs
                figures[name]["round_trips"] = stats.depth
        figures["speedup_vs_one_range"] = round(
            figures["one_range"]["seconds"] / figures["parallel_ranges"]["seconds"], 2)
        return figures
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
