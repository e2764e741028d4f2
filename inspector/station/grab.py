"""The grab stage: frames from the source into the pipeline, and the source kept alive.

A source that fails (a camera unplugged, a hot folder moved away, a bug in a source) raises the
``source`` fault with one ``source_lost`` alarm; the stage closes it and opens it again with
back-off (``source.reconnect_backoff_s``, doubling up to ``reconnect_backoff_max_s``), and
``source_restored`` clears the fault once it is back. A hot-folder file that already has a
stored result (a crash between storing and filing it away) is filed away, not inspected twice.

Example:
    >>> grab = Grabber(cfg, source, store, frame_q, board, ...)          # doctest: +SKIP
    >>> opened = grab.open_once() is None                               # doctest: +SKIP
    >>> threading.Thread(target=grab.run, args=(opened,)).start()       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from inspector.config.station import Config
from inspector.core.alarms import Alarm
from inspector.core.result import Result
from inspector.sources.base import Frame, Source, SourceError, new_cell_id
from inspector.station.batcher import STOP
from inspector.station.faults import FaultBoard
from inspector.station.frames import Grabbed
from inspector.station.metrics import Metrics
from inspector.station.pairing_stage import PairingStage
from inspector.station.watchdog import Progress
from inspector.store.db import Store

log = logging.getLogger("inspector.station.grab")



def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"


def acknowledge(source: Source, store: Store, frame: Frame, ok: bool, row_id: int | None) -> None:
    """Tell the source its frame is done; note in the store when its file is filed away."""
    try:
        filed = source.ack(frame, ok)
    except Exception:
        log.exception("source ack of %s failed", frame.cell_id)
        return
    if filed and row_id is not None:
        try:
            store.mark_filed(row_id)
        except Exception:
            log.exception("could not note that the file of result %s is filed away", row_id)


class Grabber:
    """Takes the source's frames to ``frame_q`` (or to the pairing stage) until ``stop``.

    Args:
        cfg: the station's configuration (the source's reconnect back-off).
        source: the source.
        store: the store, asked whether a file already has a result.
        frame_q: the queue of frames to prepare.
        board: the faults and alarms.
        progress: the stages' progress (a source that waits inside one file stalls "grab").
        metrics: frames and source errors.
        counts: the daemon's counters (``frames``).
        stop: set when the station stops.
        pairing: with ``pairing.mode: mqtt``, the stage the frames go to instead.
    """

    def __init__(
        self,
        cfg: Config,
        source: Source,
        store: Store,
        frame_q: queue.Queue,
        board: FaultBoard,
        progress: Progress,
        metrics: Metrics,
        counts: dict[str, int],
        stop: threading.Event,
        pairing: PairingStage | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.store = store
        self.frame_q = frame_q
        self.board = board
        self.progress = progress
        self.metrics = metrics
        self.counts = counts
        self._stop = stop
        self.pairing = pairing

    def open_once(self) -> str | None:
        """Open the source; the reason when it cannot be opened."""
        try:
            self.source.open()
            return None
        except Exception as exc:
            reason = _reason(exc)
            log.error("source not opened: %s", reason)
            return reason

    def run(self, opened: bool) -> None:
        """The stage: grab until ``stop``, reopening a failed source with back-off."""
        first, longest = self.cfg.source.reconnect_backoff()
        backoff = first
        # a source that beats while it waits is "busy" between frames: stuck inside one file,
        # it stops beating and the stall check (watchdog, status) sees the grab stage hang
        beats = self.source.watch_liveness(lambda: self.progress.busy("grab"))
        while not self._stop.is_set():
            try:
                if not opened:
                    self.source.open()
                    opened = True
                    self.board.clear(
                        "source", Alarm.SOURCE_RESTORED, f"{self.source.name} source is back"
                    )
                if beats:
                    self.progress.busy("grab")
                for frame in self.source.frames():
                    self.progress.idle("grab")  # a full frame queue is the next stage's wait
                    backoff = first  # it delivers: the next loss starts the back-off anew
                    self._take(frame)
                    if beats:
                        self.progress.busy("grab")
                self.progress.idle("grab")
                if self._stop.is_set():
                    break
                raise SourceError(f"{self.source.name} source stopped delivering frames")
            except Exception as exc:  # SourceError, or a bug in a source: alarm, back off, reopen
                opened = False
                if self._lost(exc, backoff):
                    break
                backoff = min(longest, backoff * 2)
        if self.pairing is None:
            self.frame_q.put(STOP)
        else:  # the pairing stage decides what still waits, then ends the frames
            self.pairing.frames_done()

    def _lost(self, exc: Exception, backoff: float) -> bool:
        """The source failed: fault and alarm, close it, wait ``backoff``; True on a stop."""
        self.progress.idle("grab")
        self.metrics.source_errors.inc()
        reason = _reason(exc)
        if not isinstance(exc, SourceError):
            log.exception("source failed")
        self.board.raise_fault("source", reason, Alarm.SOURCE_LOST, reason, source=self.source.name)
        try:
            self.source.close()
        except Exception:
            log.exception("closing the failed source")
        log.info("reopening the source in %.1f s", backoff)
        return self._stop.wait(backoff)

    def _take(self, frame: Frame) -> None:
        t = time.monotonic()
        self.metrics.frames.inc()
        self.counts["frames"] += 1
        if not frame.cell_id:
            frame.cell_id = new_cell_id()
        if self._already_stored(frame):
            return
        if self.pairing is None:
            self.frame_q.put(Grabbed(frame, t))
        else:
            self.pairing.add_frame(Grabbed(frame, t))

    def _already_stored(self, frame: Frame) -> bool:
        """A file handed out again after a crash between storing its result and filing it away
        (same path, same content, never filed away): file it now instead of inspecting it a
        second time under a new frame_id. A file filed away before and queued again on
        purpose (``mv done/X.png .``) is inspected anew; the log says which it was."""
        path, digest = frame.meta.get("path"), frame.meta.get("sha256")
        if not path or not digest:
            return False
        try:
            stored = self.store.result_for_file(str(path), digest)
        except Exception:  # the store stage raises the store fault for this frame
            log.exception("looking up an earlier result of %s failed", path)
            return False
        if stored is None:
            return False
        row_id, payload, filed = stored
        earlier = Result.from_payload(payload)
        if filed:
            log.info(
                "%s has the content of result %s, filed away before: queued again, inspected anew",
                path,
                earlier.frame_id,
            )
            return False
        log.warning(
            "%s already has result %s (stored before a restart, never filed away):"
            " filed away now, not inspected again",
            path,
            earlier.frame_id,
        )
        acknowledge(self.source, self.store, frame, earlier.verdict != "error", row_id)
        return True
