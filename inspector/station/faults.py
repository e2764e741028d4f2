"""The station's faults and alarms: what is wrong now, the status that follows from it, and an
alarm when a fault appears or goes away, never at every check.

A fault is a name (``source``, ``store``, ``disk``, ...) with a detail; while any is set the
status is ``degraded`` (its detail lists them), else ``online``. The status goes to MQTT
(retained) and to systemd. Alarms are logged and published; their kinds are
``inspector.core.alarms.Alarm``.

Example:
    >>> board = FaultBoard(link=None)
    >>> board.raise_fault("disk", "0.80 GB free", Alarm.DISK_LOW, "reject pictures not saved")
    >>> "disk" in board, board.clear("disk", Alarm.HOUSEKEEPING_RESTORED, "upkeep works again")
    (True, None)
"""

from __future__ import annotations

import logging
import threading

from inspector.comms.mqtt import MqttLink
from inspector.core.alarms import Alarm
from inspector.station.systemd import sd_notify

log = logging.getLogger("inspector.station.faults")


class FaultBoard:
    """The faults now set, with the status and the alarms they bring (thread-safe).

    Args:
        link: the MQTT link alarms and the status go to; None without MQTT (logged only).
    """

    def __init__(self, link: MqttLink | None) -> None:
        self.link = link
        self._faults: dict[str, str] = {}
        self._lock = threading.Lock()

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._faults

    def alarm(self, kind: Alarm, severity: str, message: str, **extra: object) -> None:
        """Log an alarm and publish it (when MQTT is enabled)."""
        level = logging.ERROR if severity == "critical" else logging.WARNING
        log.log(level, "alarm %s: %s", kind, message, extra={"alarm": kind, **extra})
        if self.link is not None:
            self.link.alarm(kind, severity, message, **extra)

    def set(self, name: str, detail: str | None) -> bool:
        """Set (``detail``) or clear (None) a fault; the status follows. True when the fault
        appeared or went away, so the caller alarms once, not at every check."""
        with self._lock:
            before = self._faults.get(name)
            if detail is None:
                self._faults.pop(name, None)
            else:
                self._faults[name] = detail
            if before == detail:
                return False
            faults = dict(self._faults)
        state = "degraded" if faults else "online"
        text = "; ".join(f"{k}: {v}" for k, v in sorted(faults.items()))
        if self.link is not None:
            self.link.set_status(state, text)
        sd_notify(f"STATUS={state}{': ' + text if text else ''}")
        return (before is None) != (detail is None)

    def raise_fault(
        self, name: str, detail: str, kind: Alarm, message: str, **extra: object
    ) -> None:
        """Set fault ``name``; the critical alarm ``kind`` goes out when the fault is new."""
        if self.set(name, detail):
            self.alarm(kind, "critical", message, **extra)

    def clear(self, name: str, kind: Alarm | None = None, message: str = "") -> None:
        """Clear fault ``name``; the info alarm ``kind`` (if any) goes out when it was set."""
        if self.set(name, None) and kind is not None:
            self.alarm(kind, "info", message)
