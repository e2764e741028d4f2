"""The ``alarms`` section: which rejects raise an alarm."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from inspector.core.config_base import ConfigSection


class AlarmsConfig(ConfigSection):
    """Which rejects raise an ``alarm`` (station faults always do)."""

    reject: Literal["off", "every", "rate"] = Field(
        "every",
        description="off: rejects raise no alarm (the result says fail); every: one `reject` "
        "alarm per rejected cell; rate: one `reject_rate` alarm when the share of rejects among "
        "the last `reject_window` cells reaches `reject_rate`, one `reject_rate_restored` when "
        "it falls back below.",
    )
    reject_rate: float = Field(
        0.05, gt=0, le=1, description="rate only: share of rejects (0..1) that raises the alarm."
    )
    reject_window: int = Field(
        100, ge=1, le=100_000, description="rate only: how many of the latest cells count."
    )
