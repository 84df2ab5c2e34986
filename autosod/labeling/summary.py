"""The run summary of a labelling job: counts merged from writer rows, and a readable table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["STAGES", "RunCounts", "format_summary"]

STAGES = ("decode", "label", "encode", "write")
_MAX_ERRORS_PER_REASON = 5


@dataclass
class RunCounts:
    """Mergeable totals of the writer's count rows (fixed-size state plus capped error samples)."""

    by_status: Counter = field(default_factory=Counter)
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    parts: int = 0
    devices: set[str] = field(default_factory=set)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def update(self, batch: dict[str, np.ndarray]) -> None:
        """Add one batch of writer output rows (columns of `label_stages._counts`)."""
        for status, count, sample in zip(batch["status"], batch["count"], batch["error_sample"],
                                         strict=True):
            self.by_status[str(status)] += int(count)
            samples = self.errors.setdefault(str(status), []) if status != "ok" else None
            if samples is not None and sample and len(samples) < _MAX_ERRORS_PER_REASON:
                samples.append(str(sample))
        for stage in STAGES:
            self.stage_s[stage] += float(np.sum(batch[f"{stage}_s"]))
        self.parts += int(np.sum(batch["parts"]))
        for devices in batch["device"]:
            self.devices.update(d for d in str(devices).split(",") if d)

    @property
    def processed(self) -> int:
        return sum(self.by_status.values())

    def to_dict(self) -> dict[str, Any]:
        total_s = sum(self.stage_s.values())
        share = {k: (v / total_s if total_s > 0 else 0.0) for k, v in self.stage_s.items()}
        return {
            "processed": self.processed,
            "counts": dict(sorted(self.by_status.items())),
            "error_samples": self.errors,
            "stage_s": self.stage_s,
            "stage_share": share,
            "parts_written": self.parts,
            "actor_devices": sorted(self.devices),
        }


def format_summary(summary: dict[str, Any]) -> str:
    """A readable multi-line table of a run summary (as saved in the store)."""
    kind = "prediction" if summary.get("checkpoint") else "labelling"
    lines = [f"{kind} run: {summary.get('source')} -> {summary.get('store')}"]
    rows = [("checkpoint", summary["checkpoint"])] if summary.get("checkpoint") else []
    rows += [
        ("manifest images", summary.get("manifest_rows")),
        ("already committed (skipped)", summary.get("skipped_committed")),
        ("processed this run", summary.get("processed")),
    ]
    rows += [(f"  {status}", count) for status, count in summary.get("counts", {}).items()]
    rows += [
        ("store rows (committed)", summary.get("store_rows")),
        ("wall time (s)", f"{summary.get('wall_s', 0.0):.1f}"),
        ("images per second", f"{summary.get('images_per_s', 0.0):.2f}"),
    ]
    rows += [(f"  {phase} (wall s)", f"{seconds:.1f}")
             for phase, seconds in summary.get("phase_s", {}).items()]
    share = summary.get("stage_share", {})
    for stage, seconds in summary.get("stage_s", {}).items():
        rows.append((f"  {stage} (task s, share)", f"{seconds:.1f} ({share.get(stage, 0):.0%})"))
    ray_info = summary.get("ray", {})
    rows += [
        ("ray", ray_info.get("how")),
        ("actor plan", ray_info.get("plan") or f"{ray_info.get('num_actors')} x "
                                                  f"{ray_info.get('actor_resources')}"),
        ("actor devices", ", ".join(summary.get("actor_devices", [])) or "no batches"),
        ("versions", " ".join(f"{k}={v}" for k, v in summary.get("versions", {}).items())),
    ]
    width = max(len(str(name)) for name, _ in rows)
    lines += [f"  {name!s:<{width}}  {value}" for name, value in rows]
    for status, samples in summary.get("error_samples", {}).items():
        for sample in samples[:2]:
            lines.append(f"  e.g. {status}: {sample[:160]}")
    return "\n".join(lines)
