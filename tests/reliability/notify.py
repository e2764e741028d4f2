"""Waiting for systemd watchdog pings on the ``notify_socket`` fixture (conftest)."""

from __future__ import annotations

import socket


def next_ping(sock: socket.socket, timeout: float) -> bool:
    """True when a WATCHDOG=1 arrives within ``timeout`` (other notifications are skipped)."""
    sock.settimeout(timeout)
    try:
        while b"WATCHDOG=1" not in sock.recv(4096).split(b"\n"):
            pass
        return True
    except TimeoutError:
        return False
