"""`python jobs/evaluate.py --pred DIR_OR_STORE --gt DIR [--json FILE] [--plots DIR]` over Ray Data.

The same options as `autosod evaluate` (autosod/cli/evaluate.py) plus the cluster's; for
`ray job submit -- python jobs/evaluate.py ...` on large benchmark sets.
"""

from __future__ import annotations

import typer

from autosod.cli.evaluate import evaluate_job_command

app = typer.Typer(add_completion=False)
app.command()(evaluate_job_command)

if __name__ == "__main__":
    app()
