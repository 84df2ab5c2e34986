"""Benchmarks: `python jobs/benchmark.py {potnet,io,label,evaluate,quality} --json FILE`.

Each subcommand parses its options and calls one function of `autosod.benchmarks`; results are
recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import typer

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


if __name__ == "__main__":
    app()
