"""The daemon's Prometheus metrics and the small HTTP server that exposes them on /metrics.

Example:
    >>> metrics = Metrics()
    >>> metrics.frames.inc(); port = metrics.serve(0)   # doctest: +SKIP
"""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

METRICS_MAX_CONNECTIONS = 8  # a scraper needs one; more are closed at once
METRICS_TIMEOUT_S = 5.0  # a silent or half-sent request is dropped after this


class _MetricsHandler(WSGIRequestHandler):
    timeout = METRICS_TIMEOUT_S  # socketserver sets it on the connection

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base's name)
        pass  # a scrape every few seconds does not belong in the journal


class BoundedMetricsServer(ThreadingMixIn, WSGIServer):
    """The /metrics HTTP server with at most ``max_connections`` open at a time, each dropped
    after ``METRICS_TIMEOUT_S`` of silence, so idle clients cannot take the file handles
    (and threads) the line needs."""

    daemon_threads = True
    max_connections = METRICS_MAX_CONNECTIONS

    def __init__(self, *args, **kwargs) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self.refused = 0
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class Metrics:
    """The daemon's Prometheus metrics, in their own registry (several daemons per process
    in tests); ``serve(port)`` exposes them over HTTP."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.frames = Counter("inspector_frames", "Frames received from the source", registry=r)
        self.verdicts = Counter("inspector_verdicts", "Verdicts by kind", ["verdict"], registry=r)
        self.latency = Histogram(
            "inspector_stage_seconds",
            "Seconds per stage (queue, infer, decide, store, publish)",
            ["stage"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
            registry=r,
        )
        self.queue_depth = Gauge("inspector_queue_depth", "Items waiting", ["queue"], registry=r)
        self.backlog = Gauge(
            "inspector_outbox_backlog", "Results not yet acknowledged by the broker", registry=r
        )
        self.pending_jobs = Gauge(
            "inspector_explanation_jobs", "Rejects waiting for an explanation", registry=r
        )
        self.source_errors = Counter(
            "inspector_source_errors", "Source failures (device lost...)", registry=r
        )
        self.batch_size = Histogram(
            "inspector_batch_size",
            "Frames per backend call",
            buckets=(1, 2, 4, 8, 16, 32),
            registry=r,
        )
        self._server = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the /metrics HTTP endpoint; returns the port (0 picks a free one)."""
        server_class = BoundedMetricsServer
        if ":" in host:  # an IPv6 address such as ::1
            server_class = type("BoundedMetricsServer6", (server_class,), {})
            server_class.address_family = socket.AF_INET6
        server = make_server(
            host,
            port,
            make_wsgi_app(self.registry),
            server_class=server_class,
            handler_class=_MetricsHandler,
        )
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        self._server = server
        return server.server_port

    @property
    def port(self) -> int | None:
        """The port /metrics is served on (None when not serving)."""
        return self._server.server_port if self._server is not None else None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
