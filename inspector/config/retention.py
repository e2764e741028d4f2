"""The ``retention`` section: how long the data directory keeps results and pictures."""

from __future__ import annotations

from pydantic import Field

from inspector.core.config_base import ConfigSection


class RetentionConfig(ConfigSection):
    """How long results and reject pictures are kept, and how much disk they may take.

    Unpublished results and rejects that still wait for an explanation are never deleted.
    """

    max_age_days: float = Field(30.0, gt=0, description="Results older than this are deleted.")
    max_disk_gb: float = Field(
        20.0, gt=0, description="Oldest results (pictures first) go until the data fit in this."
    )
    check_every_s: float = Field(600.0, gt=0, description="How often retention runs.")
    disk_low_alarm_gb: float = Field(
        1.0,
        ge=0,
        description="Free-space floor: below it `disk_low` is raised and reject pictures are "
        "not saved (verdicts still are).",
    )
