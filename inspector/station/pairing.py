"""Cell ids for hardware-triggered frames: ids from MQTT and frames paired in time, never guessed.

With a hardware trigger the camera takes a frame when the cell passes a light barrier; the
cell's id comes separately (a code reader or the PLC, as a ``trigger`` message). A frame and
an id *touch* when they arrive within ``window`` seconds of each other, either way round. A
frame is paired with an id only when they touch each other and nothing else still open; every
other case is flagged (``source.pairing`` of the result) instead of matched by position:

- ``paired``: one frame, one id.
- ``no_cell_id``: a frame that no id touches (the id is missing or came too late); it is
  inspected under a generated id.
- ``no_frame``: an id that no frame touches (an extra id, a frame the camera missed, or an id
  too late for its frame); its cell gets an ``error`` result.
- ``ambiguous``: a frame touched by two ids, or an id touching two frames; the frame is
  inspected under a generated id and each id gets an ``error`` result.

A frame is decided once every id that could still touch it has arrived (``window`` after the
frame, longer while a touching id's own window is open), so each result waits up to two
windows. The class is pure bookkeeping on times the caller passes in; ``pairing_stage`` runs it.

Example:
    >>> p = Pairer(0.5)
    >>> p.add_id("C-1", "pouch", t=10.0); p.add_frame("frame-1", t=10.1)
    >>> [(d.flag, d.cell_id, d.frame) for d in p.due(now=10.7)]
    [('paired', 'C-1', 'frame-1')]
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Generic, TypeVar

F = TypeVar("F")

FLAGS = ("paired", "no_cell_id", "no_frame", "ambiguous")


@dataclass
class PairOutcome(Generic[F]):
    """What became of one frame or one id: a frame with or without its id, or an id alone."""

    flag: str  # one of FLAGS
    frame: F | None  # None: an id without a frame
    cell_id: str | None  # None: a frame without an id
    product: str | None = None
    offset_ms: float | None = None  # frame time minus id time, for a pair
    t: float = 0.0  # arrival of the frame (or of the id, for an id alone)


@dataclass
class _Id:
    cell_id: str
    product: str | None
    t: float


class Pairer(Generic[F]):
    """Pairs frames and ids that arrive within ``window`` seconds of each other."""

    def __init__(self, window: float) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = window
        self._frames: collections.deque[tuple[F, float]] = collections.deque()
        self._ids: list[_Id] = []

    def add_frame(self, frame: F, t: float) -> None:
        """A frame arrived at monotonic time ``t`` (frames come in time order)."""
        self._frames.append((frame, t))

    def add_id(self, cell_id: str, product: str | None, t: float) -> None:
        """A cell id arrived at monotonic time ``t``."""
        self._ids.append(_Id(cell_id, product, t))

    def pending(self) -> tuple[int, int]:
        """Frames and ids not decided yet."""
        return len(self._frames), len(self._ids)

    def _touch(self, t_frame: float, i: _Id) -> bool:
        return abs(t_frame - i.t) <= self.window

    def _frame_ready(self, t_frame: float, now: float) -> bool:
        if now < t_frame + self.window:
            return False
        # a touching id could still touch a frame that has not arrived yet
        return all(now >= i.t + self.window for i in self._ids if self._touch(t_frame, i))

    def next_deadline(self) -> float | None:
        """When ``due`` will next decide something (unless a frame or id arrives before);
        None when nothing waits."""
        times = [
            i.t + self.window
            for i in self._ids
            if not any(self._touch(t, i) for _, t in self._frames)  # else its frame decides it
        ]
        if self._frames:
            t = self._frames[0][1]
            touching = [i.t + self.window for i in self._ids if self._touch(t, i)]
            times.append(max([t + self.window, *touching]))
        return min(times) if times else None

    def due(self, now: float) -> list[PairOutcome[F]]:
        """Everything that can be decided at ``now``, frames in order, then lone ids."""
        out: list[PairOutcome[F]] = []
        while self._frames and self._frame_ready(self._frames[0][1], now):
            out.extend(self._decide_frame(*self._frames.popleft()))
        for i in list(self._ids):
            if now >= i.t + self.window and not any(self._touch(t, i) for _, t in self._frames):
                self._ids.remove(i)
                out.append(PairOutcome("no_frame", None, i.cell_id, i.product, t=i.t))
        return out

    def drain(self) -> list[PairOutcome[F]]:
        """Decide everything now, as if every window had closed (the daemon is stopping)."""
        out = self.due(float("inf"))
        assert not self._frames and not self._ids
        return out

    def _decide_frame(self, frame: F, t: float) -> list[PairOutcome[F]]:
        touching = [i for i in self._ids if self._touch(t, i)]
        if not touching:
            return [PairOutcome("no_cell_id", frame, None, t=t)]
        (first, *more) = touching
        others = [tf for _, tf in self._frames if self._touch(tf, first)]
        if not more and not others:
            self._ids.remove(first)
            offset = round((t - first.t) * 1e3, 1)
            return [PairOutcome("paired", frame, first.cell_id, first.product, offset, t)]
        for i in touching:  # never a guess: the frame and every id it touches are flagged
            self._ids.remove(i)
        out = [PairOutcome("ambiguous", frame, None, t=t)]
        out.extend(PairOutcome("ambiguous", None, i.cell_id, i.product, t=i.t) for i in touching)
        return out
