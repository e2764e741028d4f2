"""The ``inspector`` command. Each module below registers its commands on import."""

from __future__ import annotations

from inspector.cli import (  # noqa: F401  (registers commands)
    bundle,
    calibrate,
    capture,
    demo,
    evaluate,
    explain,
    export,
    feedback,
    predict,
    run,
    serve,
    synth,
    train,
)
from inspector.cli.app import app, reflow_help

reflow_help(app)


def main() -> None:
    """Console-script entry point."""
    app()
