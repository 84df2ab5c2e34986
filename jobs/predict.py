"""`python jobs/predict.py RUN_OR_CHECKPOINT SOURCE --store STORE [options]`: the prediction job.

The same options as `autosod predict` (autosod/cli/predict.py). Under `ray job submit` it joins
the job's cluster; with `--address` it joins that cluster; otherwise it starts single-node Ray.
"""

from __future__ import annotations

import typer

from autosod.cli.predict import predict_command

app = typer.Typer(add_completion=False)
app.command()(predict_command)

if __name__ == "__main__":
    app()
