"""Fixtures of the fault tests: a real Mosquitto per test, the calibrated tiny bundle and a
stand-in for systemd's notify socket."""

import socket
from pathlib import Path

import pytest

from tests.broker import broker  # noqa: F401
from tests.inspector.daemon_helpers import collector, line_bundle  # noqa: F401


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch):
    """A datagram socket standing in for systemd's NOTIFY_SOCKET, with a 100 ms watchdog."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # the daemon pings every 100 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()
