"""`autosod status STORE`: done, failed by reason, and remaining against the saved manifest."""

from __future__ import annotations

from typing import Any

from autosod.io.status import OK
from autosod.io.store.id_set import IdSet
from autosod.io.store.mask_store import MaskStore

__all__ = ["format_status", "store_status"]



def store_status(store: str, *, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts of a store, read from its commit log and saved manifest (no part scans).

    Keys: `store`, `committed`, `done` (ok rows), `failed` ({reason: count}), `manifest_rows`
    (None without a saved manifest), `remaining` (manifest ids not committed; None likewise),
    `config_hash`, `latest_run` (finished_at and images_per_s of the last summary, or None).
    Raises `CommitLogError` when a commit-log file cannot be read (counts would be wrong).
    """
    opened = MaskStore.open(store, storage_options=storage_options)
    log = opened.commit_log()
    counts = log.status_counts()
    manifest = opened.manifest_file()
    remaining = manifest_rows = None
    if manifest is not None:
        committed = IdSet(log.ids())
        manifest_rows, remaining = manifest.metadata.num_rows, 0
        for batch in manifest.iter_batches(columns=["image_id"], batch_size=1 << 20):
            remaining += int((~committed.contains(batch.column(0))).sum())
    latest = opened.latest_summary()
    return {
        "store": store,
        "committed": log.num_ids,
        "done": counts.get(OK, 0),
        "failed": {reason: n for reason, n in counts.items() if reason != OK},
        "manifest_rows": manifest_rows,
        "remaining": remaining,
        "config_hash": opened.config_hash,
        "latest_run": None if latest is None else {
            "finished_at": latest.get("finished_at"),
            "images_per_s": latest.get("images_per_s"),
            "processed": latest.get("processed"),
        },
    }


def format_status(status: dict[str, Any]) -> str:
    """Readable lines for `store_status`'s result."""
    failed = status["failed"]
    lines = [
        f"store {status['store']} (config {status['config_hash']})",
        f"  done (ok)   {status['done']}",
        f"  failed      {sum(failed.values())}",
        *(f"    {reason:<16} {count}" for reason, count in failed.items()),
        f"  committed   {status['committed']}",
    ]
    if status["remaining"] is None:
        lines.append("  remaining   unknown (no manifest saved in the store)")
    else:
        lines.append(f"  remaining   {status['remaining']} of {status['manifest_rows']} "
                     "in the manifest")
    latest = status["latest_run"]
    if latest:
        rate = latest.get("images_per_s") or 0.0
        lines.append(f"  last run    {latest.get('finished_at')}: {latest.get('processed')} "
                     f"images, {rate:.2f} img/s")
    return "\n".join(lines)
