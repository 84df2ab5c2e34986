"""`python jobs/demo.py --work DIR`: the whole system on the shared images, with self-training.

1. label `DATA/unlabeled` and the images of `DATA/{weizmann-horse,grabcut,coco-mval}` with POTNet
   (their masks unused), or reuse stores given with `--label-stores DIR` (DIR/r0-<name>);
2. round 1: train the `small` preset on those pseudo-masks (or reuse `--round1 RUN`);
3. predict the same images with round 1 into stores (DIR/r1-<name>): round 2's training data,
   and round 1's masks of the horse and GrabCut images;
4. round 2: train on the predicted stores, starting from round 1's weights (`--init-from`);
5. predict horse and GrabCut with round 2 (DIR/r2-<name>);
6. evaluate pseudo-masks, round 1 and round 2 against the ground truth; write a markdown table.

Every step resumes: rerunning the command skips what is done (stores and runs resume). One
single-node Ray serves all steps (or `--address`). `--limit N` takes the first N images of each
source and `--epochs` / `--round2-epochs` shorten training, for a quick check.
"""

from __future__ import annotations

import json
import logging
import platform
import posixpath
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from autosod.evaluation.runs import evaluate_source
from autosod.labeling.config import build_label_config
from autosod.labeling.job import run_label_job
from autosod.prediction.config import build_predict_config
from autosod.prediction.job import run_predict_job
from autosod.ray_connection import ray_session
from autosod.training.job import run_train_job
from autosod.training.job_config import build_train_config

SETS = ("unlabeled", "weizmann-horse", "grabcut", "coco-mval")  # the training images
SCORED = ("weizmann-horse", "grabcut")  # the sets evaluated against their ground truth
ROWS = (("pseudo-masks (POTNet)", "r0"), ("round 1 model", "r1"), ("round 2 model", "r2"))
logger = logging.getLogger("autosod.demo")
app = typer.Typer(add_completion=False)


def _images(data: Path, name: str) -> str:
    return str(data / name) if name == "unlabeled" else str(data / name / "images")


def _label(data: Path, work: Path, label_stores: Path | None, limit: int | None) -> list[str]:
    stores = []
    for name in SETS:
        given = label_stores / f"r0-{name}" if label_stores else None
        if given is not None and (given / "store.json").exists():
            stores.append(str(given))
            continue
        store = str(work / f"r0-{name}")
        run_label_job(build_label_config(source=_images(data, name), store=store, limit=limit,
                                         progress=False))
        stores.append(store)
    return stores


def _train(stores: list[str], run: Path, data: Path, epochs: int | None,
           init_from: str | None) -> str:
    if not (run / "summary.json").exists():
        run_train_job(build_train_config(
            stores=stores, run=str(run), preset_name="small", train={"epochs": epochs},
            val_gt=tuple(str(data / name) for name in SCORED), init_from=init_from))
    return str(run)


def _predict(run: str, data: Path, work: Path, prefix: str, names: tuple[str, ...],
             limit: int | None) -> list[str]:
    stores = []
    for name in names:
        store = str(work / f"{prefix}-{name}")
        run_predict_job(build_predict_config(checkpoint=run, source=_images(data, name),
                                             store=store, limit=limit, progress=False))
        stores.append(store)
    return stores


def _table(work: Path, data: Path, r0: dict[str, str], command: str) -> str:
    lines = [f"Machine: {platform.node()} ({platform.machine()}, CPU only); date "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; command: `{command}`.", "",
             "| masks | " + " | ".join(f"{n} IoU | {n} max F" for n in SCORED) + " |",
             "|---|" + "---:|---:|" * len(SCORED)]
    figures: dict[str, dict] = {}
    for label, prefix in ROWS:
        cells = []
        for name in SCORED:
            store = r0[name] if prefix == "r0" else str(work / f"{prefix}-{name}")
            metrics = evaluate_source(store, str(data / name), name=f"{prefix}-{name}").metrics
            figures.setdefault(prefix, {})[name] = {k: metrics[k] for k in ("iou", "max_f")}
            cells += [f"{metrics['iou']:.3f}", f"{metrics['max_f']:.3f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    (work / "demo.json").write_text(json.dumps(figures, indent=1) + "\n")
    return "\n".join(lines) + "\n"


@app.command()
def demo(
    work: Annotated[Path, typer.Option(help="Folder for the stores, runs and table.")],
    data: Annotated[Path, typer.Option(help="The shared data folder.")] = Path("../shared/data"),
    label_stores: Annotated[Path | None, typer.Option(
        help="Folder holding r0-<set> pseudo-mask stores to reuse instead of labelling.")] = None,
    round1: Annotated[str | None, typer.Option(
        help="A finished round-1 run to reuse instead of training one.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Round 1 epochs (preset: 10).")] = None,
    round2_epochs: Annotated[int | None, typer.Option(
        help="Round 2 epochs (default: as round 1).")] = None,
    limit: Annotated[int | None, typer.Option(
        help="Only the first N images of each set (a quick check).")] = None,
    address: Annotated[str | None, typer.Option(help="Ray address to join.")] = None,
) -> None:
    """Label, train round 1, predict, train round 2, evaluate; prints the markdown table."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    work.mkdir(parents=True, exist_ok=True)
    command = "python jobs/demo.py " + " ".join(sys.argv[1:])
    with ray_session(address):
        r0_stores = _label(data, work, label_stores, limit)
        run1 = round1 or _train(r0_stores, work / "runs" / "round1", data, epochs, None)
        r1_stores = _predict(run1, data, work, "r1", SETS, limit)
        run2 = _train(r1_stores, work / "runs" / "round2", data, round2_epochs or epochs, run1)
        _predict(run2, data, work, "r2", SCORED, limit)
        table = _table(work, data, dict(zip(SETS, r0_stores, strict=True)), command)
    (work / "demo.md").write_text(table)
    typer.echo(table)
    logger.info("table written to %s", posixpath.join(str(work), "demo.md"))


if __name__ == "__main__":
    app()
