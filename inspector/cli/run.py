"""``inspector run``: the line daemon, as systemd starts it."""

from __future__ import annotations

from pathlib import Path

import typer

from inspector.cli.app import app
from inspector.cli.errors import user_errors
from inspector.core.logs import setup_logging
from models.recipe import load_recipe


@app.command()
def run(
    config: Path = typer.Option(..., "--config", "-c", help="The station's YAML config file."),
    check: bool = typer.Option(
        False, "--check", help="Only validate the config (and the bundle) and exit."
    ),
) -> None:
    """Run the line daemon: grab frames, inspect them, store and publish verdicts over MQTT.

    Runs until SIGTERM or Ctrl-C, then finishes the frames in flight, publishes the offline
    status and exits 0. A bad config stops the start with the key path and the reason
    (exit status 2), as does a data directory that is not writable or is in use by another
    `inspector run`. A damaged database is moved aside (store_damaged alarm) and a fresh one
    started.
    """
    from inspector.config.station import load_config  # pydantic sections: not at --help

    with user_errors():
        cfg = load_config(config)
        if check:
            for bundle in cfg.products.bundles.values() if cfg.products else [cfg.bundle]:
                load_recipe(bundle)
            typer.echo(f"{config}: OK (station {cfg.station.line}/{cfg.station.station})")
            return
    from inspector.station.daemon import Daemon  # paho, prometheus_client: not at --help

    setup_logging(cfg.health.log_format, cfg.health.log_level)
    with user_errors():
        daemon = Daemon(cfg)
    raise typer.Exit(daemon.run())
