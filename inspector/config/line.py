"""The ``station`` section: the line and station names that form the MQTT topic root."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from inspector.core.config_base import ConfigSection

# MQTT topic levels: no wildcards, no separators, no NUL, not empty
_TOPIC_LEVEL = re.compile(r"^[^/+#\x00]+$")


class StationConfig(ConfigSection):
    """Where this box stands: the names that form the MQTT topic root."""

    line: str = Field(
        min_length=1, max_length=64, description="Production line name (topic level)."
    )
    station: str = Field(
        min_length=1, max_length=64, description="Station name on that line (topic level)."
    )

    @field_validator("line", "station")
    @classmethod
    def _topic_safe(cls, v: str) -> str:
        if not _TOPIC_LEVEL.match(v):
            raise ValueError("must not contain '/', '+', '#' or NUL (it is an MQTT topic level)")
        return v
