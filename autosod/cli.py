"""The `autosod` command line: each command parses its options and calls one library function."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="autosod: POTNet pseudo-labelling, evaluation and training for salient object detection.",
    no_args_is_help=True,
    add_completion=False,
)

@app.callback()
def _autosod() -> None:
    """Keeps command names required (`autosod evaluate ...`) whatever the number of commands."""


# evaluate: options shared with jobs/evaluate.py (autosod/evaluation/options.py)
from autosod.evaluation.options import evaluate_command  # noqa: E402

app.command("evaluate")(evaluate_command)


if __name__ == "__main__":
    app()
