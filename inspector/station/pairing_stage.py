"""The pairing stage (``pairing.mode: mqtt``): runs ``inspector.station.pairing.Pairer`` on the
frames of a hardware-triggered camera and the cell ids the PLC sends, and passes each outcome
on as a frame: a pair under its id, anything else flagged in its ``source.pairing`` and
alarmed (an id without a frame becomes an ``error`` frame of its own).

Example:
    >>> pairing = PairingStage(cfg.pairing.window_s, frame_q, board)   # doctest: +SKIP
    >>> pairing.add_id("C-1", "pouch")       # the MQTT thread         # doctest: +SKIP
    >>> pairing.add_frame(grabbed)           # the grab stage          # doctest: +SKIP
"""

from __future__ import annotations

import queue
import threading
import time

from inspector.core.alarms import Alarm
from inspector.sources.base import Frame
from inspector.station.batcher import STOP
from inspector.station.faults import FaultBoard
from inspector.station.frames import Grabbed
from inspector.station.pairing import Pairer, PairOutcome


class PairingStage:
    """Pairs frames and ids as their windows close; each outcome goes on to ``frame_q``.

    Args:
        window_s: ``pairing.window_s``.
        frame_q: the queue of frames to prepare.
        board: the alarms.
    """

    def __init__(self, window_s: float, frame_q: queue.Queue, board: FaultBoard) -> None:
        self.window_s = window_s
        self.pairer: Pairer[Grabbed] = Pairer(window_s)
        self.frame_q = frame_q
        self.board = board
        self._wake = threading.Condition()
        self._frames_done = False

    def add_id(self, cell_id: str, product: str | None) -> None:
        """A cell id from the PLC (the MQTT thread)."""
        with self._wake:
            self.pairer.add_id(cell_id, product, time.monotonic())
            self._wake.notify()

    def add_frame(self, g: Grabbed) -> None:
        """A frame from the camera (the grab stage), at the time it was grabbed."""
        with self._wake:
            self.pairer.add_frame(g, g.t_grab)
            self._wake.notify()

    def frames_done(self) -> None:
        """No more frames (the grab stage ended): decide what still waits, then stop."""
        with self._wake:
            self._frames_done = True
            self._wake.notify()

    def run(self) -> None:
        """The stage: decide frames and ids as their windows close."""
        while True:
            with self._wake:
                if self._frames_done:
                    outcomes, done = self.pairer.drain(), True
                else:
                    deadline = self.pairer.next_deadline()
                    now = time.monotonic()
                    if deadline is None or deadline > now:
                        wait = None if deadline is None else deadline - now
                        self._wake.wait(wait)
                        continue
                    outcomes, done = self.pairer.due(now), False
                    if not outcomes:  # not expected (see next_deadline): never spin on it
                        self._wake.wait(0.01)
            for outcome in outcomes:
                self.frame_q.put(self._as_frame(outcome))
            if done:
                self.frame_q.put(STOP)
                return

    def _as_frame(self, d: PairOutcome[Grabbed]) -> Grabbed:
        """A pairing outcome as the frame it becomes, alarmed when it is not a clean pair."""
        if d.frame is None:  # an id without a frame: its cell gets an error result
            why = f"no frame within pairing.window_s ({self.window_s:g} s) of the id"
            if d.flag == "ambiguous":
                why = "its frame cannot be told apart: two ids or two frames in one window"
            frame = Frame(d.cell_id, None, product=d.product, error=why, meta={"pairing": d.flag})
            kind = Alarm.FRAME_MISSING if d.flag == "no_frame" else Alarm.CELL_ID_AMBIGUOUS
            self.board.alarm(kind, "warning", f"cell {d.cell_id}: {why}", cell_id=d.cell_id)
            return Grabbed(frame, time.monotonic(), alarmed=True)
        g = d.frame
        g.frame.meta["pairing"] = d.flag
        if d.flag == "paired":
            g.frame.cell_id = d.cell_id
            g.frame.product = d.product or g.frame.product
            g.frame.meta["pairing_offset_ms"] = d.offset_ms
            return g
        g.frame.meta["cell_id_generated"] = True
        cell = g.frame.cell_id
        if d.flag == "no_cell_id":
            window = f"{self.window_s:g} s"
            self.board.alarm(
                Alarm.CELL_ID_MISSING,
                "warning",
                f"frame inspected as {cell}: no cell id within pairing.window_s ({window})",
                cell_id=cell,
            )
        else:
            self.board.alarm(
                Alarm.CELL_ID_AMBIGUOUS,
                "warning",
                f"frame inspected as {cell}: two ids or two frames in one window, none taken",
                cell_id=cell,
            )
        return g
