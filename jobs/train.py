"""`python jobs/train.py STORE [STORE ...] --run RUN [options]`: the training job.

The same options as `autosod train` (autosod/cli/train.py). Under `ray job submit` it joins
the job's cluster; with `--address` it joins that cluster; otherwise it starts single-node Ray.
"""

from __future__ import annotations

import typer

from autosod.cli.train import train_command

app = typer.Typer(add_completion=False)
app.command()(train_command)

if __name__ == "__main__":
    app()
