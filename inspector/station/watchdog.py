"""Which stage is stuck: ``Progress`` tracks the stages busy with one item, and ``Watchdog``
pings systemd's watchdog only while none has been busy with one item longer than ``stall_s``:
a stage stuck inside one frame stops the pings, and systemd restarts the service.

Example:
    >>> progress = Progress()
    >>> progress.busy("infer"); progress.stalled(stall_s=60.0)
    []
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from inspector.station.systemd import sd_notify, watchdog_interval

log = logging.getLogger("inspector.station.watchdog")


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
