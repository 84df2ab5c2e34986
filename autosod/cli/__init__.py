"""The `autosod` command line (typer lives only in this package)."""

from autosod.cli.app import app

__all__ = ["app"]
