"""The ``mqtt`` section: the broker connection, TLS towards it, and the publishing behaviour.

The password need not sit in the file: ``password_env: NAME`` reads it from the environment,
which a systemd ``EnvironmentFile`` can hold.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from inspector.core.config_base import ConfigSection


def _env_secret(name: str | None) -> str | None:
    if name is not None and name not in os.environ:
        raise ValueError(f"environment variable {name} is not set")
    return name


class TLSConfig(ConfigSection):
    """TLS towards the broker; files are PEM. No CA file means the system's trust store."""

    ca_file: Path | None = Field(None, description="CA certificate that signed the broker's.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS only).")
    key_file: Path | None = Field(None, description="Its private key (mutual TLS only).")
    insecure: bool = Field(
        False, description="Skip the broker host name check (test benches only)."
    )


class MqttConfig(ConfigSection):
    """The broker connection and the publishing behaviour."""

    enabled: bool = Field(True, description="false: results are only stored (bench, offline).")
    host: str = Field("localhost", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual for TLS).")
    client_id: str | None = Field(
        None, description="MQTT client id; default `inspector-<role>-<line>-<station>`."
    )
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Its password (prefer password_env).")
    password_env: str | None = Field(
        None, description="Environment variable holding the broker password."
    )
    tls: TLSConfig | None = Field(None, description="Set to connect over TLS.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive interval.")
    topic_prefix: str = Field(
        "inspector/v1", description="Topics are `<prefix>/<line>/<station>/<kind>`."
    )
    heartbeat_s: float = Field(
        10.0, gt=0, description="Heartbeat period; also how often backlog and disk are checked."
    )
    reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay after a loss.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay (back-off).")
    inflight_window: int = Field(
        100, ge=1, le=10_000, description="Results published and not yet acknowledged, at most."
    )
    backlog_alarm: int = Field(
        1000, ge=1, description="Unpublished results above this raise `broker_backlog`."
    )

    @field_validator("password_env")
    @classmethod
    def _env_is_set(cls, v: str | None) -> str | None:
        return _env_secret(v)

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        return self

    def resolved_password(self) -> str | None:
        """The password from the file or from the environment variable it names."""
        if self.password_env:
            return os.environ[self.password_env]
        return self.password.get_secret_value() if self.password else None
