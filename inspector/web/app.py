"""The technicians' page: recent rejects, one reject with its pictures, explanation and chat.

``create_app(store, chat_fn, settings)`` builds the FastAPI application from the routers in
``inspector.web.routers``; ``inspector serve`` runs it under uvicorn. Everything but
``/health``, the login form and the stylesheet needs a login (bearer token, HTTP Basic or the
cookie the login form sets), checked by ``inspector.web.guard`` before any route. Pages are
Jinja2 templates with autoescaping on; pictures are looked up by frame id in the store, never
by a path taken from the request.

Example:
    >>> app = create_app(Store(data_dir), template_chat, WebConfig(token=...))  # doctest: +SKIP
"""

from __future__ import annotations

from fastapi import FastAPI

from inspector.config.web import WebConfig
from inspector.web.deps import ChatFn, RejectStore, WebState
from inspector.web.guard import guard
from inspector.web.routers import auth, chat, feedback, health, pictures, rejects, static


def create_app(store: RejectStore, chat_fn: ChatFn, settings: WebConfig) -> FastAPI:
    """The technicians' page over ``store``, answering chat questions with ``chat_fn``.

    Args:
        store: the station's store (``inspector.store.db.Store``); its ``data_dir`` bounds every
            file the page reads.
        chat_fn: ``chat_fn(reject, history, question) -> answer``; ``history`` holds the earlier
            turns of this reject as ``{role, text, ts}``.
        settings: the ``web`` section of the config; its credentials are read now.

    Raises:
        CredentialsError: no token or username/password is configured.
    """
    app = FastAPI(
        title="battery-inspector: technicians' page",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.web = WebState.create(store, chat_fn, settings)
    app.state.chat_desk = chat.ChatDesk()
    app.middleware("http")(guard)
    for concern in (health, static, auth, rejects, pictures, chat, feedback):
        app.include_router(concern.router)
    app.router.on_shutdown.append(app.state.chat_desk.close)
    return app
