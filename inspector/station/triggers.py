"""The trigger stage: cell ids from the PLC (MQTT ``trigger``) to the camera, one frame each.

``take`` runs on the MQTT thread and never blocks (a blocked MQTT thread makes the broker drop
messages): it queues the trigger, or, with ``pairing.mode: mqtt``, hands the id to the pairing
stage. A trigger that finds the queue full is answered by the stage with an ``error`` result
(and a ``trigger_overflow`` alarm at once); one that arrives while the station stops is
refused. Every trigger the source could not execute still gets its cell a verdict: ``error``.

Example:
    >>> triggers = Triggers(source, trigger_q, frame_q, board, counts, stop)   # doctest: +SKIP
    >>> link = MqttLink(..., on_trigger=triggers.take)                       # doctest: +SKIP
    >>> threading.Thread(target=triggers.run, name="trigger").start()        # doctest: +SKIP
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
import time

from inspector.core.alarms import Alarm
from inspector.sources.base import Frame, Source
from inspector.station.batcher import STOP
from inspector.station.faults import FaultBoard
from inspector.station.frames import Grabbed
from inspector.station.pairing_stage import PairingStage

_OVERFLOW = object()  # wakes the trigger stage to answer overflowed triggers


class Triggers:
    """Takes triggers from MQTT and executes them on the source, in order.

    Args:
        source: the source that takes the triggers.
        trigger_q: the bounded queue of triggers waiting for the source.
        frame_q: where an error frame goes for a trigger that got no frame.
        board: the alarms.
        counts: the daemon's counters (``triggers``).
        stop: set when the station stops: triggers are refused from then on.
        pairing: with ``pairing.mode: mqtt``, the stage the ids go to instead.
    """

    def __init__(
        self,
        source: Source,
        trigger_q: queue.Queue,
        frame_q: queue.Queue,
        board: FaultBoard,
        counts: dict[str, int],
        stop: threading.Event,
        pairing: PairingStage | None = None,
    ) -> None:
        self.source = source
        self.trigger_q = trigger_q
        self.frame_q = frame_q
        self.board = board
        self.counts = counts
        self._stop = stop
        self.pairing = pairing
        # triggers that found trigger_q full: tiny items, answered with an error result by the
        # trigger stage (the MQTT thread must never block, or the broker drops messages)
        self._overflow: collections.deque[tuple[str, str | None]] = collections.deque()

    def take(self, cell_id: str, product: str | None) -> None:
        """Runs on the MQTT thread: hand the trigger on without ever blocking."""
        if self._stop.is_set():
            self.refuse(cell_id)
            return
        if self.pairing is not None:  # an id for a hardware-triggered frame, not a grab
            self.counts["triggers"] += 1
            self.pairing.add_id(cell_id, product)
            return
        try:
            self.trigger_q.put_nowait((cell_id, product))
        except queue.Full:  # still give the cell a verdict: error, with the reason
            self._overflow.append((cell_id, product))
            self.board.alarm(
                Alarm.TRIGGER_OVERFLOW,
                "critical",
                f"trigger {cell_id} not executed: {self.trigger_q.maxsize} triggers already wait",
                cell_id=cell_id,
            )
            # wake the trigger stage should it sit in get() (the queue emptied meanwhile)
            with contextlib.suppress(queue.Full):
                self.trigger_q.put_nowait(_OVERFLOW)

    def refuse(self, cell_id: str) -> None:
        self.board.alarm(
            Alarm.TRIGGER_REFUSED,
            "warning",
            f"trigger {cell_id} refused: stopping",
            cell_id=cell_id,
        )

    def refuse_waiting(self) -> None:
        """At a stop, once the stage has ended: refuse what still waits behind it."""
        while not self.trigger_q.empty():  # queued behind STOP as it was put
            item = self.trigger_q.get_nowait()
            if item is not STOP and item is not _OVERFLOW:
                self.refuse(item[0])
        while self._overflow:
            self.refuse(self._overflow.popleft()[0])

    def _answer_overflow(self) -> None:
        """An error result for each trigger that found the queue full (blocking put: this is
        the trigger stage's own thread, and the frames queue drains)."""
        while self._overflow:
            cell_id, product = self._overflow.popleft()
            frame = Frame(cell_id, None, product=product, error="trigger queue full")
            self.frame_q.put(Grabbed(frame, time.monotonic()))

    def run(self) -> None:
        """The stage: each trigger to the source, until ``STOP`` is queued."""
        while True:
            self._answer_overflow()
            item = self.trigger_q.get()
            if item is _OVERFLOW:
                continue
            if item is STOP:
                self._answer_overflow()
                return
            cell_id, product = item
            self.counts["triggers"] += 1
            if not self.source.triggerable:
                self.board.alarm(
                    Alarm.TRIGGER_UNSUPPORTED,
                    "warning",
                    f"trigger for {cell_id} ignored: the {self.source.name} source takes none",
                    cell_id=cell_id,
                )
                continue
            try:
                self.source.trigger(cell_id, product)
            except Exception as exc:  # the frame is lost: say so with an error verdict
                self.board.alarm(
                    Alarm.TRIGGER_FAILED, "critical", f"{cell_id}: {exc}", cell_id=cell_id
                )
                frame = Frame(cell_id, None, product=product, error=f"trigger failed: {exc}")
                self.frame_q.put(Grabbed(frame, time.monotonic()))
