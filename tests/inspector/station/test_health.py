"""systemd notify and watchdog, and the Prometheus metrics of the running daemon."""

from __future__ import annotations

import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from inspector.sources.base import Frame
from inspector.station.daemon import Daemon
from inspector.station.systemd import sd_notify
from inspector.station.watchdog import Progress, Watchdog
from tests.inspector.daemon_helpers import QueueSource, good_image, make_config, running


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch):
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def messages_until(sock: socket.socket, wanted: str) -> list[str]:
    seen = []
    while True:
        msg = sock.recv(4096).decode()
        seen.append(msg)
        if wanted in msg.split("\n"):
            return seen


def test_sd_notify_is_a_no_op_outside_systemd(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False


def test_the_watchdog_is_pinged_only_while_no_stage_is_stuck(notify_socket, monkeypatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # ping every 20 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    progress = Progress()
    dog = Watchdog(progress, stall_s=0.05, alive=lambda: True)
    dog.start()
    try:
        assert notify_socket.recv(64) == b"WATCHDOG=1"
        progress.busy("infer")  # stuck inside one batch from now on
        notify_socket.settimeout(0.3)
        with pytest.raises(TimeoutError):
            while True:  # pings already in flight drain; then none may come
                notify_socket.recv(64)
        progress.idle("infer")
        notify_socket.settimeout(10)
        assert notify_socket.recv(64) == b"WATCHDOG=1"
    finally:
        dog.stop()


def test_the_daemon_reports_ready_and_serves_its_metrics(
    tmp_path: Path, notify_socket, line_bundle: Path
) -> None:
    source = QueueSource()
    cfg = make_config(
        tmp_path,
        line_bundle,
        None,
        health={"metrics_port": 0, "metrics_host": "127.0.0.1"},
    )
    stored = threading.Semaphore(0)
    daemon = Daemon(cfg, source=source, on_result=lambda *_: stored.release())
    with running(daemon):
        assert any("READY=1" in m for m in messages_until(notify_socket, "READY=1"))
        source.push(Frame("M-1", good_image()))
        source.push(Frame("M-2", None, error="buffer incomplete"))
        assert stored.acquire(timeout=30) and stored.acquire(timeout=30)
        port = daemon.metrics.port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    text = text.decode()
    assert "inspector_frames_total 2.0" in text
    assert 'inspector_verdicts_total{verdict="pass"} 1.0' in text
    assert 'inspector_verdicts_total{verdict="error"} 1.0' in text
    assert 'inspector_stage_seconds_count{stage="infer"} 1.0' in text
    assert "inspector_outbox_backlog" in text
