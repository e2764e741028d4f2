"""The daemon's housekeeping thread: every heartbeat, the store's upkeep (WAL checkpoint, the
outbox backlog and its fault, retention when due, the disk's free space), the stall check,
then the heartbeat itself.

Upkeep that fails raises the ``housekeeping`` fault (status degraded, one alarm); the stall
check and the heartbeat still go on. ``room_for_pictures`` is the disk check the store stage
asks before it keeps a picture.

Example:
    >>> keeper = Housekeeping(cfg, store, board, ...)          # doctest: +SKIP
    >>> threading.Thread(target=keeper.run).start()            # doctest: +SKIP
    >>> stop.set()   # the thread ends within a heartbeat         # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from inspector.comms.mqtt import MqttLink
from inspector.config.station import Config
from inspector.core.alarms import Alarm
from inspector.station.faults import FaultBoard
from inspector.station.metrics import Metrics
from inspector.station.telemetry import Telemetry
from inspector.station.watchdog import Progress
from inspector.store.db import Store

log = logging.getLogger("inspector.station.housekeeping")


class Housekeeping:
    """Store upkeep, stall check and heartbeat, every ``mqtt.heartbeat_s`` until ``stop``.

    Args:
        cfg: the station's configuration (``retention``, ``mqtt``, ``health``).
        store: the station's store.
        board: the faults and alarms.
        metrics: the gauges it updates (backlog, explanation jobs, queue depths).
        progress: the stages' progress, for the stall check.
        queues: the queues whose depth is a gauge, by label.
        counts: the daemon's counters, published in the heartbeat.
        telemetry: the model's telemetry, published in the heartbeat.
        link: the MQTT link the heartbeat goes to (None: no heartbeat).
        stop: set when the daemon stops.
        started: the daemon's start (monotonic), for ``uptime_s``.
    """

    def __init__(
        self,
        cfg: Config,
        store: Store,
        board: FaultBoard,
        metrics: Metrics,
        progress: Progress,
        queues: dict[str, queue.Queue],
        counts: dict[str, int],
        telemetry: Telemetry,
        link: MqttLink | None,
        stop: threading.Event,
        started: float,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.board = board
        self.metrics = metrics
        self.progress = progress
        self.queues = queues
        self.counts = counts
        self.telemetry = telemetry
        self.link = link
        self._stop = stop
        self._started = started

    def room_for_pictures(self) -> bool:
        """False (and the disk fault) when the data directory is below the free-space floor."""
        free_gb = self.store.free_bytes() / 1e9
        if free_gb >= self.cfg.retention.disk_low_alarm_gb:
            self.board.set("disk", None)
            return True
        detail = f"{free_gb:.2f} GB free"
        self.board.raise_fault(
            "disk", detail, Alarm.DISK_LOW, f"{detail}: reject pictures not saved"
        )
        return False

    def run(self) -> None:
        """The thread: every heartbeat, upkeep, the stall check and the heartbeat."""
        hb = self.cfg.mqtt.heartbeat_s
        next_retention = [time.monotonic()]
        last = dict(self.counts)
        last_t = time.monotonic()
        while not self._stop.wait(hb):
            now = time.monotonic()
            backlog = None
            try:
                backlog = self._upkeep(now, next_retention)
            except Exception as exc:
                log.exception("housekeeping failed")
                reason = f"{type(exc).__name__}: {exc}"[:300]
                self.board.raise_fault(
                    "housekeeping",
                    reason,
                    Alarm.HOUSEKEEPING_FAILED,
                    f"store upkeep failed, results are at risk: {reason}",
                )
            else:
                self.board.clear(
                    "housekeeping", Alarm.HOUSEKEEPING_RESTORED, "store upkeep works again"
                )
            try:
                self._check_stalls()  # not store upkeep: also while that fails
                if self.link is not None:
                    self._heartbeat(now, now - last_t, last, backlog)
                last, last_t = dict(self.counts), now
            except Exception:
                log.exception("heartbeat failed")

    def _heartbeat(self, now: float, dt: float, last: dict[str, int], backlog: int | None) -> None:
        frames = self.counts["frames"] - last["frames"]
        self.link.heartbeat(
            {
                **self.counts,
                "frames_per_s": round(frames / max(1e-6, dt), 2),
                "backlog": backlog,
                "uptime_s": round(now - self._started, 1),
                "status": self.link.status,
                **self.telemetry.snapshot(),
            }
        )

    def _upkeep(self, now: float, next_retention: list[float]) -> int:
        """Checkpoint the WAL, update the gauges and the backlog fault, apply retention when
        due, check the disk; returns the backlog."""
        ret = self.cfg.retention
        self.store.checkpoint()
        backlog = self.store.backlog()
        self.metrics.backlog.set(backlog)
        self.metrics.pending_jobs.set(self.store.pending_jobs())
        for label, q in self.queues.items():
            self.metrics.queue_depth.labels(label).set(q.qsize())
        unpublished = f"{backlog} results unpublished"
        over = backlog > self.cfg.mqtt.backlog_alarm
        if self.board.set("backlog", unpublished if over else None) and over:
            self.board.alarm(Alarm.BROKER_BACKLOG, "warning", unpublished)
        if now >= next_retention[0]:
            next_retention[0] = now + ret.check_every_s
            self.store.apply_retention(ret.max_age_days * 86400, int(ret.max_disk_gb * 1e9))
        self.room_for_pictures()  # every heartbeat: the disk fault also clears
        return backlog

    def _check_stalls(self) -> None:
        """Degrade the status while a stage hangs inside one item (the watchdog also stops)."""
        stall_s = self.cfg.health.stall_s
        stalled = self.progress.stalled(stall_s)
        if not stalled:
            self.board.set("stalled", None)
            return
        detail = f"{', '.join(sorted(stalled))} stage stuck for over {stall_s:g} s"
        self.board.raise_fault("stalled", detail, Alarm.PIPELINE_STALLED, detail)
