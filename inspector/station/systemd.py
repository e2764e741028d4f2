"""Telling systemd how the service is: ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``
over the notify socket (``Type=notify`` units: the daemon and the explainer).

Example:
    >>> sd_notify("READY=1", "STATUS=inspecting")   # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("inspector.station.systemd")


def sd_notify(*states: str) -> bool:
    """Send ``READY=1``, ``WATCHDOG=1``, ``STATUS=...`` to systemd; False when not under it."""
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
