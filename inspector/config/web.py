"""The ``web`` section: where the technicians' page listens and who may in.

Secrets are best given by the name of an environment variable (``token_env``,
``password_env``) so they stay out of the config file; the systemd environment file sets them.

Example (YAML):
    web:
      host: 127.0.0.1          # localhost only unless you mean otherwise
      port: 8088
      token_env: INSPECTOR_WEB_TOKEN
      username: technician      # optional, with password_env, for HTTP Basic and the login form
      password_env: INSPECTOR_WEB_PASSWORD
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import Field, SecretStr, model_validator

from inspector.core.config_base import ConfigSection

DEFAULT_TOKEN_ENV = "INSPECTOR_WEB_TOKEN"


class CredentialsError(ValueError):
    """No usable login is configured; the page refuses to start rather than run open."""


@dataclass(frozen=True)
class Credentials:
    """The secrets the page accepts, resolved from the config and the environment."""

    token: str | None
    username: str | None
    password: str | None


class WebConfig(ConfigSection):
    """Where the technicians' page listens, how people log in, how much a list shows."""

    host: str = Field("127.0.0.1", description="Address to bind; 127.0.0.1 keeps it local.")
    port: int = Field(
        8088,
        ge=1,
        le=65535,
        description="Port of the page (8080 is left to a local language-model server).",
    )
    token: SecretStr | None = Field(None, description="Access token (prefer token_env).")
    token_env: str | None = Field(
        DEFAULT_TOKEN_ENV, description="Environment variable holding the access token."
    )
    username: str | None = Field(
        None, min_length=1, description="User name for HTTP Basic and the login form."
    )
    password: SecretStr | None = Field(None, description="Its password (prefer password_env).")
    password_env: str | None = Field(None, description="Environment variable holding the password.")
    page_size: int = Field(50, ge=1, le=1000, description="Rejects per list page.")
    session_hours: float = Field(12.0, gt=0, description="How long a login lasts (one shift).")
    cookie_secure: bool = Field(False, description="Send the login cookie over HTTPS only.")
    chat_timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="A chat question not answered within this gets an error page (504); the "
        "rest of the page never waits for the assistant.",
    )

    @model_validator(mode="after")
    def _password_needs_user(self) -> WebConfig:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        has_password = self.password is not None or self.password_env is not None
        if has_password and not self.username:
            raise ValueError("password or password_env needs a username")
        return self

    def credentials(self, environ: dict[str, str] | None = None) -> Credentials:
        """The token and username/password in force, read from the environment where named.

        Raises:
            CredentialsError: neither a token nor a username/password is set.
        """
        env = os.environ if environ is None else environ
        token = self.token.get_secret_value() if self.token else None
        if token is None and self.token_env:
            token = env.get(self.token_env) or None
        password = self.password.get_secret_value() if self.password else None
        if password is None and self.password_env:
            password = env.get(self.password_env) or None
        if token is None and password is None:
            where = f"the environment variable {self.token_env}" if self.token_env else "web.token"
            raise CredentialsError(
                f"web: no login configured: set {where} to an access token "
                "(or web.username with web.password_env)"
            )
        return Credentials(token, self.username if password else None, password)
