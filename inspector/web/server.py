"""Runs the technicians' page under uvicorn with limits that keep it answering.

Uvicorn waits for the head of a request for ever: a thousand clients that send half a
request hold a thousand connections (and file handles) until they go away. ``TimelyH11``
closes a connection whose request line and headers are not complete within
``HEADER_TIMEOUT_S``; idle keep-alive connections close after ``KEEP_ALIVE_S``.

Example:
    >>> serve_app(app, "127.0.0.1", 8080)   # blocks until SIGTERM   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import signal

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5


class TimelyH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request head is late."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # still inside a request head
            self._arm_head_timer()
        elif self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and (
            self.cycle is None or self.cycle.response_complete
        ):
            log.info("closing a connection from %s: no complete request in time", self.client)
            self.transport.close()


def serve_app(app, host: str, port: int) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, with the limits above; SIGHUP is logged and
    ignored (its default would end the page without a word)."""
    signal.signal(
        signal.SIGHUP,
        lambda *_: log.warning("SIGHUP ignored: restart the service to read the configuration"),
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        http=TimelyH11,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
