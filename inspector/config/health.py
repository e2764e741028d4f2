"""The ``health`` section: systemd watchdog, Prometheus metrics and the log format."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from inspector.core.config_base import ConfigSection


class HealthConfig(ConfigSection):
    """systemd watchdog, Prometheus metrics and log format."""

    metrics_port: int | None = Field(
        9108, ge=0, le=65535, description="Prometheus `/metrics` port; null: no endpoint."
    )
    metrics_host: str = Field("127.0.0.1", description="Address the metrics endpoint binds.")
    stall_s: float = Field(
        30.0, gt=0, description="A stage busy with one item this long stops the watchdog pings."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one object per line (journald); text: for people."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level logged."
    )
