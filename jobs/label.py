"""`python jobs/label.py SOURCE --store STORE [options]`: the labelling job.

The same options as `autosod label` (autosod/cli/label.py). Under `ray job submit` it joins
the job's cluster; with `--address` it joins that cluster; otherwise it starts single-node Ray.
"""

from __future__ import annotations

import typer

from autosod.cli.label import label_command

app = typer.Typer(add_completion=False)
app.command()(label_command)

if __name__ == "__main__":
    app()
