"""The ``feedback`` section of the station config: which passed frames are kept for feedback
datasets (``inspector feedback export``).

Example (YAML):
    feedback:
      keep_passed_every: 50     # the frame of every 50th passed cell
"""

from __future__ import annotations

from pydantic import Field

from inspector.core.config_base import ConfigSection


class FeedbackConfig(ConfigSection):
    """Frames kept for feedback datasets (``inspector feedback export``)."""

    keep_passed_every: int = Field(
        0,
        ge=0,
        description="Keep the frame of every n-th passed cell (0: none), for feedback datasets; "
        "like reject pictures, not below `retention.disk_low_alarm_gb` free, and counted in "
        "`retention.max_disk_gb`.",
    )
