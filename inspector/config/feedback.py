"""The ``feedback`` section of the station config: which passed frames are kept for feedback
datasets (``inspector feedback export``).

Example (YAML):
    feedback:
      keep_passed_every: 50     # the frame of every 50th passed cell
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FeedbackConfig(BaseModel):
    """Frames kept for feedback datasets (``inspector feedback export``)."""

    model_config = ConfigDict(extra="forbid")

    keep_passed_every: int = Field(
        0,
        ge=0,
        description="Keep the frame of every n-th passed cell (0: none), for feedback datasets; "
        "like reject pictures, not below `retention.disk_low_alarm_gb` free, and counted in "
        "`retention.max_disk_gb`.",
    )
