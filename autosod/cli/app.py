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


# evaluate: options shared with jobs/evaluate.py (autosod/cli/evaluate.py)
from autosod.cli.evaluate import evaluate_command  # noqa: E402

app.command("evaluate")(evaluate_command)

# label: options shared with jobs/label.py (autosod/cli/label.py)
from autosod.cli.label import label_command  # noqa: E402

app.command("label")(label_command)

# predict: options shared with jobs/predict.py (autosod/cli/predict.py)
from autosod.cli.predict import predict_command  # noqa: E402

app.command("predict")(predict_command)

# quality: options shared with `python jobs/benchmark.py quality` (benchmarks/quality_options.py)
from autosod.cli.quality import quality_command  # noqa: E402

app.command("quality")(quality_command)

# train: options shared with jobs/train.py (autosod/cli/train.py)
from autosod.cli.train import train_command  # noqa: E402

app.command("train")(train_command)

_STORE_HELP = "Mask store: a local folder or s3://bucket/prefix."
_ENDPOINT_HELP = "S3-compatible endpoint for s3:// stores (default: AWS or $AWS_ENDPOINT_URL)."


@app.command("status")
def status(store: str = typer.Argument(..., help=_STORE_HELP),
           endpoint_url: str | None = typer.Option(None, help=_ENDPOINT_HELP)) -> None:
    """Done, failed by reason, and remaining against the store's manifest."""
    from autosod.io.filesystem import storage_options_for
    from autosod.io.store.commit_log import CommitLogError
    from autosod.store_tools.status import format_status, store_status

    try:
        typer.echo(format_status(store_status(store,
                                              storage_options=storage_options_for(endpoint_url))))
    except (FileNotFoundError, ValueError, CommitLogError) as exc:
        typer.echo(f"autosod status: error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command("export")
def export(store: str = typer.Argument(..., help=_STORE_HELP),
           out: str = typer.Option(..., "--out", help="Folder to write <image stem>.png into."),
           soft: bool = typer.Option(False, "--soft", help="Write 8-bit soft saliency maps "
                                     "instead of binary masks (0/255)."),
           endpoint_url: str | None = typer.Option(None, help=_ENDPOINT_HELP)) -> None:
    """Write one PNG per labelled image, named by the image's file stem."""
    from autosod.io.filesystem import storage_options_for
    from autosod.io.store.commit_log import CommitLogError
    from autosod.store_tools.export import export_store

    try:
        result = export_store(store, out, soft=soft,
                              storage_options=storage_options_for(endpoint_url))
    except (FileNotFoundError, ValueError, CommitLogError) as exc:
        typer.echo(f"autosod export: error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {result.written} PNGs to {result.out} ({result.skipped_failed} failed "
               f"rows skipped, {result.renamed} renamed to keep names unique)")


@app.command("preview")
def preview(store: str = typer.Argument(..., help=_STORE_HELP),
            out: str = typer.Option(..., "--out", help="Folder for preview.png and index.html."),
            max_images: int = typer.Option(24, help="Labelled images to show."),
            max_failed: int = typer.Option(4, help="Failed rows to show (with their status)."),
            endpoint_url: str | None = typer.Option(None, help=_ENDPOINT_HELP)) -> None:
    """A grid of images with their masks overlaid (PNG) and an index.html to look at them."""
    from autosod.io.filesystem import storage_options_for
    from autosod.io.store.commit_log import CommitLogError
    from autosod.store_tools.preview import write_preview

    try:
        result = write_preview(store, out, max_images=max_images, max_failed=max_failed,
                               storage_options=storage_options_for(endpoint_url))
    except (FileNotFoundError, ValueError, CommitLogError) as exc:
        typer.echo(f"autosod preview: error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"preview of {result.shown_ok} images and {result.shown_failed} failures: "
               f"{result.grid_png} and {result.index_html}")


if __name__ == "__main__":
    app()
