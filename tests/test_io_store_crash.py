"""A writer process SIGKILLed in the middle of a shard leaves no visible partial rows, and the
rerun leaves every image_id exactly once (local disk and S3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from test_io_store import CONFIG, ids_range, make_rows

from autosod.io import MaskStore, open_filesystem

PART_ROWS = 40
PARTS = 5
KILLED_PART = 3  # parts 0-2 are committed; part 3's data file is in place, its commit is not

WRITER = textwrap.dedent(
    """
    import json, pathlib, sys, time
    sys.path.insert(0, sys.argv[7])  # the tests folder, for the row helpers
    from autosod.io.store.mask_store import MaskStore
    from test_io_store import CONFIG, ids_range, make_rows

    uri, options, ready, killed_part, part_rows, parts = sys.argv[1:7]
    options = json.loads(options)
    real_commit = MaskStore._write_commit
    written = []

    def commit_or_hang(self, commit):
        if len(written) == int(killed_part):  # data file of this part is already in place
            pathlib.Path(ready).write_text(commit.data)
            time.sleep(600)
        written.append(commit.part_key)
        real_commit(self, commit)

    MaskStore._write_commit = commit_or_hang
    store = MaskStore.open(uri, config=CONFIG, storage_options=options)
    n = int(part_rows)
    for part in range(int(parts)):
        store.write_part(make_rows(ids_range(part * n, (part + 1) * n)), shard=0)
    """
)


def _run_writer_and_kill(uri: str, options: dict | None, tmp_path: Path) -> str:
    """Start the writer, wait until it hangs before committing KILLED_PART, SIGKILL it."""
    ready = tmp_path / "ready.txt"
    tests_dir = str(Path(__file__).resolve().parent)
    args = [uri, json.dumps(options), str(ready), str(KILLED_PART), str(PART_ROWS), str(PARTS),
            tests_dir]
    proc = subprocess.Popen([sys.executable, "-c", WRITER, *args], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, f"writer exited early with code {proc.returncode}"
            assert time.monotonic() < deadline, "writer never reached the commit of the part"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return ready.read_text()


@pytest.fixture(params=["local", "s3"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict | None]:
    if request.param == "local":
        return str(tmp_path / "store"), None
    options = request.getfixturevalue("s3")
    open_filesystem("s3://crash", options)[0].mkdir("crash")
    return "s3://crash/store", options


def test_killed_writer_leaves_no_partial_rows_and_rerun_no_duplicates(
    store_location: tuple[str, dict | None], tmp_path: Path
) -> None:
    uri, options = store_location
    orphan = _run_writer_and_kill(uri, options, tmp_path)
    fs, root = open_filesystem(uri, options)
    assert fs.exists(f"{root}/{orphan}"), "the kill must land after the data file was written"

    store = MaskStore.open(uri, config=CONFIG, storage_options=options)
    committed = ids_range(0, KILLED_PART * PART_ROWS)
    assert sorted(store.read(["image_id"])["image_id"].to_pylist()) == committed
    assert store.done_ids() == set(committed)

    # Rerun: skip done ids, write the rest with different part boundaries, and also
    # rewrite one committed part as a retry would.
    everything = ids_range(0, PARTS * PART_ROWS)
    remaining = [i for i in everything if i not in store.done_ids()]
    for start in range(0, len(remaining), 25):
        store.write_part(make_rows(remaining[start : start + 25]), shard=0)
    store.write_part(make_rows(ids_range(PART_ROWS, 2 * PART_ROWS)), shard=0)

    counts = Counter(store.read(["image_id"])["image_id"].to_pylist())
    assert sorted(counts) == everything
    assert set(counts.values()) == {1}, [i for i, c in counts.items() if c > 1]
    # a writer of a killed run may still be about to commit: young orphans stay
    assert store.remove_uncommitted() == 0
    assert fs.exists(f"{root}/{orphan}")
    assert store.remove_uncommitted(min_age_s=0) == 1
    assert not fs.exists(f"{root}/{orphan}")
    assert Counter(store.read(["image_id"])["image_id"].to_pylist()) == counts
