"""``inspector serve``: the technicians' page (rejects, heat maps, explanations, chat)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from inspector.cli.app import app
from inspector.cli.errors import user_errors
from inspector.store.db import Store
from models.recipe import load_recipe

if TYPE_CHECKING:  # a type hint only: the section is read with the whole config
    from inspector.config.web import WebConfig

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _recipe(bundle: Path):
    """The bundle's recipe (pixel pitch and product for chat answers), or None if unreadable."""
    try:
        return load_recipe(bundle)
    except (OSError, ValueError) as exc:
        typer.secho(f"note: no bundle recipe ({exc}); sizes in px only", err=True)
        return None


@app.command()
def serve(
    config: Path = typer.Option(..., "--config", "-c", help="The station's YAML config file."),
    host: str | None = typer.Option(None, help="Address to bind (default: web.host, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default: web.port, 8088; 0 picks one)."),
) -> None:
    """Serve the technicians' page for the station's data directory.

    Recent rejects, filtered by time, product and station. Per reject: the
    frame with its heat map and numbered regions, the explanation, and a
    chat for follow-up questions.

    Log in with the token in $INSPECTOR_WEB_TOKEN (web.token_env names
    another variable) or with web.username and its password. Only /health
    and the login form are open without it. Binds to 127.0.0.1 unless
    web.host or --host says otherwise.
    """
    from inspector.config.station import load_config  # pydantic sections: not at --help
    from inspector.web.app import create_app  # fastapi, jinja2
    from inspector.web.chat import ExplainerChat  # the explainer's stack: not at --help
    from inspector.web.server import serve_app  # uvicorn

    with user_errors():
        cfg = load_config(config)
        web: WebConfig = cfg.web
        web.credentials()  # no login configured: refuse before anything else starts
        web = web.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
        )
        store = Store(cfg.data_dir)
        make_writer = None
        if getattr(cfg.explainer, "backend", "template") != "template":
            from inspector.explain.writers import create_writer  # the writers: not at --help

            def make_writer():
                return create_writer(cfg.explainer, cfg.bundle)

        chat = ExplainerChat(
            cfg.data_dir, make_writer, _recipe(cfg.bundle), check_facts=cfg.explainer.check_facts
        )
        application = create_app(store, chat, web)
    if web.host not in LOCAL_HOSTS:
        typer.secho(
            f"note: listening on {web.host}, reachable from the network; put HTTPS in front "
            "and set web.cookie_secure",
            err=True,
        )
    try:
        serve_app(application, web.host, web.port)
    finally:
        chat.close()
        store.close()
