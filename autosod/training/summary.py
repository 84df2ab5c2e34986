"""Progress lines and the run summary of a training run (plain text; no torch, no Ray)."""

from __future__ import annotations

from typing import Any

__all__ = ["epoch_line", "format_summary"]


def _figures(values: dict[str, Any]) -> str:
    return " ".join(f"{k} {values[k]:.3f}" for k in ("loss", "iou", "max_f") if k in values)


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One line per finished epoch: steps, speed, data wait, losses, validation figures."""
    parts = [
        f"epoch {record['epoch']}/{epochs}: {record['steps']} steps, {record['images']} images "
        f"in {record['train_s']:.1f} s ({record['images_per_s']:.1f} img/s, data wait "
        f"{record['data_wait_share']:.0%})",
        f"loss {record['loss']:.4f} (bce {record['bce']:.3f} dice {record['dice']:.3f} "
        f"rank {record['rank']:.3f})",
        f"val {_figures(record['val'])}",
    ]
    parts += [f"{name} {_figures(figures)}" for name, figures in record["val_gt"].items()]
    return "; ".join(parts)


def format_summary(summary: dict[str, Any]) -> str:
    """A readable table of a training run's summary (as saved in RUN/summary.json)."""
    data, best = summary.get("data", {}), summary.get("best") or {}
    lines = [f"training run: {', '.join(summary.get('stores', []))} -> {summary.get('run')}"]
    rows: list[tuple[str, Any]] = [("rows by status", data.get("counts"))]
    rows += [(f"  e.g. {status}", samples[0][:160])
             for status, samples in data.get("error_samples", {}).items() if samples]
    rows += [
        ("train / validation images", f"{data.get('train')} / {data.get('val')}"),
        ("epochs", f"{summary.get('epochs_done')} of {summary.get('epochs')} (this run: "
                   f"{summary.get('epochs_run')}, resumed after epoch "
                   f"{summary.get('resumed_after_epoch')})"),
        ("wall time (s)", f"{summary.get('wall_s', 0.0):.1f}"),
    ]
    rows += [(f"  {phase} (s)", f"{seconds:.1f}")
             for phase, seconds in summary.get("phase_s", {}).items()]
    rows += [
        ("images per second", f"{summary.get('images_per_s', 0.0):.2f} "
                              f"({summary.get('images_per_s_per_worker', 0.0):.2f} per worker)"),
        ("data wait share", f"{summary.get('data_wait_share', 0.0):.0%}"),
        ("workers", summary.get("workers")),
        ("best checkpoint", f"{best.get('uri')} (epoch {best.get('epoch')}, "
                            f"{best.get('metric')} {best.get('value', float('nan')):.4f})"),
        ("checkpoints kept", ", ".join(summary.get("checkpoints", [])) or "none"),
        ("summary", summary.get("summary_uri")),
    ]
    width = max(len(name) for name, _ in rows)
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    lines += ["  per epoch:"]
    epochs = summary.get("epochs", 0)
    lines += [f"    {epoch_line(record, epochs)}" for record in summary.get("history", [])]
    return "\n".join(lines)
