"""``inspector feedback export``: the technicians' labels as an MVTec-layout dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from inspector.cli.app import app
from inspector.cli.errors import user_errors
from inspector.offline.feedback_dataset import export_dataset
from inspector.store.db import DB_FILE, Store

feedback_app = typer.Typer(
    help="Technicians' feedback on rejects.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def export(
    config: Path = typer.Option(..., "--config", "-c", help="The station's YAML config file."),
    out: Path = typer.Option(..., "--out", help="Folder to write the dataset into."),
    product: str | None = typer.Option(
        None, help="Only this product, as the results name it (default: every product)."
    ),
) -> None:
    """Write the labelled rejects and the kept passed frames as an MVTec-layout dataset.

    One folder per product: train/good holds the false rejects (normal cells to add with
    'inspector bundle update --add-normals'), test/good the kept sample of passed frames,
    test/confirmed the confirmed rejects; feedback.csv lists each frame with its label, note,
    user, model id and score. Runs beside the line daemon (it only reads the store).
    """
    from inspector.config.station import load_config  # pydantic sections: not at --help

    with user_errors():
        cfg = load_config(config)
        if not (cfg.data_dir / DB_FILE).is_file():
            raise FileNotFoundError(f"{cfg.data_dir} holds no results yet")
        store = Store(cfg.data_dir)
        try:
            summary = export_dataset(store, out, product)
        finally:
            store.close()
    if not summary.written:
        typer.echo("no labelled frames to export yet")
    for line in summary.lines():
        typer.echo(line)
