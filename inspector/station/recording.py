"""The store stage: each result stored, then offered to MQTT (the store is the outbox), then
watched (reject alarms, drift) and counted; the source is told its frame is done.

A reject is stored with its pictures (the frame and its full-resolution map), and so is every
``feedback.keep_passed_every``-th pass, while the disk has room. A result that cannot be stored
(disk full, a damaged database) raises the ``store`` fault with one ``store_failed`` alarm; the
station keeps inspecting, and ``store_restored`` clears it.

Example:
    >>> recorder = Recorder(cfg, result_q, store, source, ...)             # doctest: +SKIP
    >>> threading.Thread(target=recorder.run, name="store").start()         # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable

from inspector.config.station import Config
from inspector.core.alarms import Alarm
from inspector.sources.base import Frame, Source
from inspector.station.batcher import STOP
from inspector.station.faults import FaultBoard
from inspector.station.frames import Outcome
from inspector.station.grab import acknowledge
from inspector.station.metrics import Metrics
from inspector.station.watch import RejectWatch, ScoreWatch
from inspector.station.watchdog import Progress
from inspector.store.db import Store
from models.preprocess import as_bgr_order

log = logging.getLogger("inspector.station.recording")

OnResult = Callable[[int, dict, Frame], None]


class Recorder:
    """Stores, publishes and watches each outcome from ``result_q``, in order.

    Args:
        cfg: the station's configuration (the frames' channel order).
        result_q: the decided frames.
        store: the station's store.
        source: the source, told when its frame is done.
        keep_passed: whether this pass keeps its picture (the sample for feedback datasets).
        room_for_pictures: whether the disk has room for pictures (and the disk fault).
        offer: hands a stored result to the MQTT outbox (None without MQTT).
        rejects, scores: the watches that see every stored result.
        board, progress, metrics: faults and alarms, the stage's progress, its metrics.
        counts: the daemon's counters (``pass``, ``fail``, ``error``).
        on_result: called as ``on_result(row_id, payload, frame)`` after each result is stored.
    """

    def __init__(
        self,
        cfg: Config,
        result_q: queue.Queue,
        store: Store,
        source: Source,
        keep_passed: Callable[[], bool],
        room_for_pictures: Callable[[], bool],
        offer: Callable[[int, dict], None] | None,
        rejects: RejectWatch,
        scores: ScoreWatch,
        board: FaultBoard,
        progress: Progress,
        metrics: Metrics,
        counts: dict[str, int],
        on_result: OnResult | None = None,
    ) -> None:
        self.cfg = cfg
        self.result_q = result_q
        self.store = store
        self.source = source
        self.keep_passed = keep_passed
        self.room_for_pictures = room_for_pictures
        self.offer = offer
        self.rejects, self.scores = rejects, scores
        self.board = board
        self.progress = progress
        self.metrics = metrics
        self.counts = counts
        self.on_result = on_result

    def run(self) -> None:
        """The stage: store each outcome until ``STOP``; a failure degrades, never stops it."""
        while True:
            item = self.result_q.get()
            if item is STOP:
                return
            self.progress.busy("store")
            row_id = None
            try:
                row_id = self._store_one(item)
                ok = item.result.verdict != "error"
            except Exception as exc:  # disk full, damaged database: degraded, keep inspecting
                log.exception("could not store %s", item.result.frame_id)
                detail = f"{type(exc).__name__}: {exc}"
                self.board.raise_fault(
                    "store",
                    detail,
                    Alarm.STORE_FAILED,
                    f"results are not being stored: {detail}",
                )
                ok = False
            else:
                self.board.clear("store", Alarm.STORE_RESTORED, "results are stored again")
            acknowledge(self.source, self.store, item.frame, ok, row_id)
            self.progress.idle("store")

    def _store_one(self, o: Outcome) -> int:
        result, frame = o.result, o.frame
        t0 = time.monotonic()
        result.latency.total = (t0 - o.t_grab) * 1e3
        payload = result.to_payload()
        keep = result.verdict == "pass" and self.keep_passed()
        image, amap = (frame.image, o.amap) if result.verdict == "fail" else (None, None)
        if keep:  # the sample of passed frames kept for feedback datasets
            image = frame.image
        if image is not None and not self.room_for_pictures():
            image = amap = None  # the verdict still goes out; only the pictures are not kept
        if image is not None:  # pictures are stored BGR, as the pages and the chat read them
            image = as_bgr_order(image, self.cfg.pipeline.channel_order)
        meta = frame.meta
        source_file = (str(meta["path"]), meta["sha256"]) if meta.get("sha256") else None
        row_id = self.store.record(
            payload, image, amap, defer_files=True, source_file=source_file, keep_image=keep
        )
        self.scores.seen(result)
        self.metrics.latency.labels("store").observe(time.monotonic() - t0)
        if self.offer is not None:
            self.offer(row_id, payload)
        self._count(o)
        if self.on_result is not None:
            self.on_result(row_id, payload, frame)
        return row_id

    def _count(self, o: Outcome) -> None:
        """Count the verdict; a reject goes to the reject watch, an error is alarmed once."""
        result = o.result
        self.counts[result.verdict] += 1
        self.metrics.verdicts.labels(result.verdict).inc()
        if result.verdict != "error":
            self.rejects.seen(result)
        elif not o.alarmed:  # unknown product, id without frame: alarmed with its own kind
            self.board.alarm(
                Alarm.FRAME_ERROR,
                "warning",
                f"cell {result.cell_id} not inspected: {result.error}",
                cell_id=result.cell_id,
                frame_id=result.frame_id,
            )
