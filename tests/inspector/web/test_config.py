"""The ``web`` config section: secrets from the environment, clear refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inspector.config.web import CredentialsError, WebConfig


def test_defaults_bind_localhost_and_read_the_token_from_the_environment() -> None:
    cfg = WebConfig()
    assert cfg.host == "127.0.0.1"
    creds = cfg.credentials({"INSPECTOR_WEB_TOKEN": "abc"})
    assert (creds.token, creds.username, creds.password) == ("abc", None, None)


def test_username_and_password_from_a_named_variable() -> None:
    cfg = WebConfig(token_env=None, username="tech", password_env="WEB_PW")
    creds = cfg.credentials({"WEB_PW": "pw"})
    assert (creds.token, creds.username, creds.password) == (None, "tech", "pw")


def test_no_secret_anywhere_is_refused_with_the_variable_named() -> None:
    with pytest.raises(CredentialsError, match="INSPECTOR_WEB_TOKEN"):
        WebConfig().credentials({})


@pytest.mark.parametrize(
    "bad",
    [
        {"password_env": "WEB_PW"},  # a password needs a user name
        {"username": "t", "password": "a", "password_env": "WEB_PW"},
        {"port": 0},
        {"colour": "blue"},
    ],
)
def test_bad_sections_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        WebConfig(**bad)


def test_the_page_and_a_local_language_model_server_do_not_share_a_port() -> None:
    from urllib.parse import urlsplit

    from inspector.explain.config import ExplainerConfig

    assert WebConfig().port != urlsplit(ExplainerConfig().openai.base_url).port


def test_the_installed_example_config_keeps_the_page_local_as_the_readme_says() -> None:
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[3]
    example = yaml.safe_load((root / "systemd" / "inspector.example.yaml").read_text())
    assert example["web"]["host"] == "127.0.0.1" == WebConfig().host
    assert example["web"]["port"] == WebConfig().port
    assert "It listens on 127.0.0.1 unless `web.host`" in (root / "README.md").read_text()
