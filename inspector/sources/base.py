"""The one interface every frame source implements, its config's base, and the frame it yields."""

from __future__ import annotations

import itertools
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import Field

from inspector.core.config_base import ConfigSection

#: The cell ids the station accepts (triggers, file names): what docs/mqtt.md documents.
CELL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
#: Product names a trigger or a file name may carry.
PRODUCT = re.compile(r"^[\w .:\-]{1,64}$")
_UNSAFE = set("<>\"'`")
RECONNECT_BACKOFF_S = (1.0, 30.0)  # first and longest wait before reopening a lost source


def safe_text(text: str) -> str:
    """``text`` with control characters, quotes and ``<``/``>`` replaced by ``_``.

    For free text from outside (a file name) on its way into a payload or an alarm, where
    a consumer might put it into a log line, a CSV field or a web page.

    Example:
        >>> safe_text('C1\\n<b>"x"')
        'C1__b__x_'
    """
    return "".join("_" if c in _UNSAFE or not c.isprintable() else c for c in text)


class SourceSection(ConfigSection):
    """The ``source`` section of one kind of source; ``kind`` (a ``Literal``) names it.

    Each kind derives its config from this and registers it in ``inspector.sources``.
    """

    kind: str

    def reconnect_backoff(self) -> tuple[float, float]:
        """The first and the longest wait (s) before the daemon reopens this source once lost.

        The wait doubles from the first up to the longest; a source that delivers again
        starts from the first.
        """
        return RECONNECT_BACKOFF_S

    @property
    def takes_ids_from_triggers(self) -> bool:
        """Whether each frame is grabbed for a trigger that names its cell (no pairing)."""
        return False


def cell_id_prefix_field() -> Any:
    """The ``cell_id_prefix`` key every kind of source has (last in its section)."""
    return Field(
        default="cell", description="Prefix of the ids given to frames that arrive without one."
    )


class SourceError(RuntimeError):
    """A source lost its device or stream; the daemon alarms and the source reconnects."""


_counter = itertools.count()
_counter_lock = threading.Lock()


def new_cell_id(prefix: str = "cell", at: datetime | None = None) -> str:
    """A unique, sortable id for a frame that arrived without one.

    UTC time to the microsecond (``at``, else now), then the process id and a counter, so two
    ids made in the same microsecond (or by two processes) still differ and still sort by time.

    Example:
        >>> new_cell_id() < new_cell_id()
        True
    """
    with _counter_lock:
        n = next(_counter)
    stamp = (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{prefix}-{stamp}-{os.getpid():x}-{n:06d}"


@dataclass
class Frame:
    """One image of one cell, as a source delivers it.

    ``image`` is HxW (8- or 16-bit gray) or HxWx3 (BGR). ``image`` may be None only together
    with ``error``: a frame the source could not deliver (a failed buffer, a corrupt file),
    which the daemon turns into an ``error`` verdict instead of dropping it.
    """

    cell_id: str
    image: np.ndarray | None
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    product: str | None = None
    meta: dict = field(default_factory=dict)
    error: str | None = None


class Source(ABC):
    """A camera, scanner folder or stream that yields frames.

    Life cycle: ``open()``, then ``frames()`` until ``close()``. ``frames()`` blocks waiting
    for the next frame and returns when the source is closed. A lost device raises
    ``SourceError`` out of ``frames()``; the daemon alarms, then calls ``open()`` again with
    back-off. Sources driven by an MQTT trigger implement ``trigger``.
    """

    name: str = "source"

    @abstractmethod
    def open(self) -> None:
        """Connect to the device or folder; raise ``SourceError`` if it is not there."""

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames as they arrive until ``close()`` is called."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; makes a blocked ``frames()`` return. Safe to call twice."""

    def ack(self, frame: Frame, ok: bool) -> bool:
        """Tell the source the daemon is done with ``frame``; ``ok`` False for an error verdict.

        Called once per frame after its result is stored. Sources that keep something per
        frame (the hot folder's file) finish it here. Returns whether the frame's file was
        filed away (the daemon notes it in the store); the default keeps nothing: False.
        """
        return False

    def watch_liveness(self, beat: Callable[[], None]) -> bool:
        """Offer to call ``beat()`` at least once a second while ``frames()`` waits for work.

        A source that does (the hot folder) lets the daemon tell a grab thread stuck inside
        one file (a hung share, a device node) from one that waits for the next file: the
        watchdog then counts the grab stage as stalled. Returns whether the source will beat;
        the default (cameras, streams, which block in their driver) does not.
        """
        return False

    @property
    def bit_depth(self) -> int | None:
        """Significant bits of the frames this source delivers (None: it does not say).

        Cameras say it from their pixel format (as reported once open); the daemon compares
        it with the recipe's ``bit_depth`` (``inspector.sources.bit_depth``).
        """
        return None

    def trigger(self, cell_id: str, product: str | None = None) -> None:
        """Ask for one frame of ``cell_id`` (software trigger). Sources without one refuse."""
        raise NotImplementedError(f"{self.name} source does not take software triggers")

    @property
    def triggerable(self) -> bool:
        """Whether ``trigger`` works for this source as configured."""
        return False
