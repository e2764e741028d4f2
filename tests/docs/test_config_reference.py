"""``docs/config-reference.md`` is exactly what the generator makes from the config schema."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "scripts" / "gen_config_reference.py"
DOC = REPO / "docs" / "config-reference.md"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_config_reference", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def test_docs_reference_equals_the_generated_one() -> None:
    try:
        from inspector.config.station import Config
    except ImportError as exc:  # pragma: no cover - only while the config module is broken
        pytest.skip(f"inspector.config.station cannot be imported ({exc}); nothing to compare with")
    expected = gen.render_reference(Config, "inspector.config.station.Config")
    assert DOC.read_text(encoding="utf-8") == expected, (
        "docs/config-reference.md is stale: run .venv/bin/python scripts/gen_config_reference.py"
    )


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "ref.md"
    stale.write_text("# old\n")
    cmd = [sys.executable, str(GENERATOR), "--check", "--out", str(stale)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "out of date" in proc.stderr
    subprocess.run(cmd[:2] + ["--out", str(stale)], check=True, capture_output=True, timeout=120)
    assert subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0


class _Camera(BaseModel):
    """A camera."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["camera"] = "camera"
    serial: str | None = Field(None, description="which camera")


class _Folder(BaseModel):
    """A hot folder."""

    kind: Literal["folder"] = "folder"
    path: Path


class _Broker(BaseModel):
    """The broker."""

    port: int = Field(1883, ge=1, le=65535, description="TCP port")
    password: SecretStr | None = None
    qos: Literal[0, 1] = 1


class _Sample(BaseModel):
    """A sample file."""

    name: str = Field(min_length=1, description="station | name")
    broker: _Broker = _Broker()
    source: _Camera | _Folder = Field(discriminator="kind")
    tags: list[str] = []


def test_rows_name_path_type_default_and_description() -> None:
    text = gen.render_reference(_Sample, "sample")
    for line in [
        "| `name` | string, length 1..any | **required** | station \\| name |",
        "| `broker.port` | integer, 1..65535 | `1883` | TCP port |",
        "| `broker.password` | secret string, optional | `null` |  |",
        "| `broker.qos` | one of `0`, `1` | `1` |  |",
        "| `source[kind=camera].serial` | string, optional | `null` | which camera |",
        "| `source[kind=folder].path` | path | **required** |  |",
        "| `tags` | list of string | `[]` |  |",
    ]:
        assert line in text
    assert "## `broker`\n\nThe broker.\n" in text
