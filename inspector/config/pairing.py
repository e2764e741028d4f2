"""The ``pairing`` section: cell ids from trigger messages for hardware-triggered frames."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from inspector.core.config_base import ConfigSection


class PairingConfig(ConfigSection):
    """Cell ids for frames the camera takes on a hardware trigger.

    With ``mode: mqtt`` a message on the ``trigger`` topic does not grab a frame: it announces
    the id (and product) of a cell, and the daemon pairs ids and frames in order when they
    arrive within ``window_s`` of each other. A frame with no id in its window, an id with no
    frame, or a frame with two ids in its window (or an id in two frames' windows) is never
    guessed: it gets a result flagged in ``source.pairing`` and an alarm. A frame's result waits
    ``window_s`` (at most twice that) for a possible second id, so ``window_s`` adds to the
    latency; it must be under half the line's takt.
    """

    mode: Literal["off", "mqtt"] = Field(
        "off", description="off: frames get generated ids; mqtt: ids from trigger messages."
    )
    window_s: float = Field(
        0.5, gt=0, le=60, description="Largest time between a frame and its id, either way."
    )
