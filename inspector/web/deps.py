"""What the routers share, as one FastAPI dependency: the store, the chat function, the
settings, the login checks, the pictures and the page templates of one application.

``create_app`` builds one ``WebState`` and keeps it on ``app.state.web``; a route asks for it
by annotating a parameter with ``State``.

Example:
    >>> @router.get("/rejects/{frame_id}")
    ... def reject_view(request: Request, frame_id: str, web: State) -> HTMLResponse:
    ...     return web.pages.not_found(request)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

from fastapi import Depends, Request

from inspector.config.web import Credentials, WebConfig
from inspector.web.auth import Authenticator, Throttle
from inspector.web.pages import Pages, static_files
from inspector.web.pictures import Pictures

ChatFn = Callable[[dict, list[dict], str], str]
LOGIN_FAILURES_PER_MINUTE = 10  # per client address, form and Authorization header together


class RejectStore(Protocol):
    """The part of ``inspector.store.db.Store`` the page reads and writes."""

    data_dir: Path

    def rejects(self, since=None, product=None, station=None, limit=100) -> list[dict]: ...
    def reject(self, frame_id: str) -> dict | None: ...
    def explanation(self, frame_id: str) -> dict | None: ...
    def chat_history(self, frame_id: str) -> list[dict]: ...
    def append_chat(self, frame_id: str, role: str, text: str) -> None: ...
    def add_feedback(self, label, user, channel, note="", frame_id=None, cell_id=None) -> dict: ...
    def feedback_history(self, frame_id: str) -> list[dict]: ...


@dataclass(frozen=True)
class WebState:
    """One application's shared pieces, built once by ``create`` and read by every route."""

    store: RejectStore
    chat_fn: ChatFn
    settings: WebConfig
    credentials: Credentials
    auth: Authenticator
    throttle: Throttle
    data_dir: Path  # bounds every file the page reads
    pictures: Pictures
    pages: Pages
    static: dict[str, tuple[bytes, str]]

    @classmethod
    def create(cls, store: RejectStore, chat_fn: ChatFn, settings: WebConfig) -> WebState:
        """The pieces for ``store``, ``chat_fn`` and ``settings``; credentials are read now.

        Raises:
            CredentialsError: no token or username/password is configured.
        """
        credentials = settings.credentials()
        data_dir = Path(store.data_dir)
        return cls(
            store=store,
            chat_fn=chat_fn,
            settings=settings,
            credentials=credentials,
            auth=Authenticator(credentials, settings.session_hours),
            throttle=Throttle(LOGIN_FAILURES_PER_MINUTE, 60.0),
            data_dir=data_dir,
            pictures=Pictures(data_dir),
            pages=Pages(),
            static=static_files(),
        )


async def web_state(request: Request) -> WebState:
    """The application's ``WebState`` (async: resolved without a worker thread)."""
    return request.app.state.web


State = Annotated[WebState, Depends(web_state)]


def client_of(request: Request) -> str:
    """The client's address, the key of its wrong-login count."""
    return request.client.host if request.client else "?"
