"""The ``inspector`` Typer application and its command groups."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="inspector",
    help="Battery-cell anomaly inspection: build model bundles, inspect images, run the line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bundle_app = typer.Typer(help="Create and inspect model bundles.", no_args_is_help=True)
app.add_typer(bundle_app, name="bundle")
