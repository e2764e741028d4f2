"""The ``inspector`` command. Each module below registers its commands on import."""

from __future__ import annotations

from inspector.cli import bundle, predict, synth  # noqa: F401  (registers commands)
from inspector.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()
