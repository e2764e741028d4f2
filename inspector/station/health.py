"""Health of the running daemon: systemd notify and watchdog, Prometheus metrics, JSON logs.

The watchdog is pinged only while every pipeline stage makes progress: a stage stuck inside
one frame longer than ``stall_s`` stops the pings, and systemd restarts the service.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

log = logging.getLogger("inspector.station.health")


def sd_notify(*states: str) -> bool:
    """Send ``READY=1``, ``WATCHDOG=1``, ``STATUS=...`` to systemd; False when not under it.

    Example:
        >>> sd_notify("READY=1", "STATUS=inspecting")   # doctest: +SKIP
        True
    """
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall("\n".join(states).encode("utf-8"))
        return True
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False


def watchdog_interval() -> float | None:
    """Half the systemd watchdog period (seconds), or None when no watchdog is set for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


class Progress:
    """Which stages are busy with an item and since when; idle stages are healthy."""

    def __init__(self) -> None:
        self._busy: dict[str, float] = {}
        self._lock = threading.Lock()

    def busy(self, stage: str) -> None:
        with self._lock:
            self._busy[stage] = time.monotonic()

    def idle(self, stage: str) -> None:
        with self._lock:
            self._busy.pop(stage, None)

    def stalled(self, stall_s: float) -> list[str]:
        """Stages busy with one item for longer than ``stall_s``."""
        now = time.monotonic()
        with self._lock:
            return [s for s, t in self._busy.items() if now - t > stall_s]


class Watchdog:
    """Pings systemd's watchdog while the pipeline makes progress (a background thread)."""

    def __init__(self, progress: Progress, stall_s: float, alive: Callable[[], bool]) -> None:
        self.progress, self.stall_s, self.alive = progress, stall_s, alive
        self.interval = watchdog_interval()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> None:
        if self.interval:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            stalled = self.progress.stalled(self.stall_s)
            if stalled or not self.alive():
                log.error("pipeline stalled (%s): withholding the watchdog ping", stalled)
                continue
            sd_notify("WATCHDOG=1")

    def stop(self) -> None:
        self._stop.set()


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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and any ``extra=`` fields."""

    _SKIP = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self._SKIP})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(fmt: str = "json", level: str = "INFO") -> None:
    """Log to stderr (journald picks it up) as JSON lines or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("inspector")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
