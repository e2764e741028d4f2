"""A source kind is one module plus one row in ``SOURCE_KINDS``: the ``source`` section takes
it, and ``create_source`` builds it, with nothing else changed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inspector.config.station import ConfigError, parse_config
from inspector.sources import SOURCE_KINDS, create_source

REPO = Path(__file__).resolve().parents[3]

FAKE_MODULE = '''
"""Frames of one grey level, as many as asked for."""

from typing import Literal

import numpy as np
from pydantic import Field

from inspector.sources.base import Frame, Source, SourceSection, cell_id_prefix_field

KIND = "fake"


class FakeSourceConfig(SourceSection):
    """A source that makes frames up."""

    kind: Literal[KIND] = KIND
    frames: int = Field(3, ge=1, description="How many frames.")
    cell_id_prefix: str = cell_id_prefix_field()


class FakeSource(Source):
    name = KIND

    def __init__(self, cfg):
        self.cfg = cfg

    def open(self):
        pass

    def frames(self):
        for i in range(self.cfg.frames):
            yield Frame(f"{self.cfg.cell_id_prefix}-{i}", np.zeros((4, 4), np.uint8))

    def close(self):
        pass
'''

WITH_FAKE = textwrap.dedent(
    """
    import fake_source
    from inspector.sources import SOURCE_KINDS, SourceKind, create_source

    SOURCE_KINDS[fake_source.KIND] = SourceKind(
        fake_source.FakeSourceConfig, fake_source.FakeSource
    )  # the one registry row

    from inspector.config.station import ConfigError, parse_config

    section = {"kind": "fake", "frames": 2, "cell_id_prefix": "f"}
    cfg = parse_config({
        "station": {"line": "L1", "station": "S1"},
        "data_dir": "data",
        "bundle": "bundle",
        "source": section,
    })
    print("config:", type(cfg.source).__name__, cfg.source.reconnect_backoff())
    source = create_source(cfg.source)
    print("frames:", [f.cell_id for f in source.frames()])
    try:
        parse_config({
            "station": {"line": "L1", "station": "S1"},
            "data_dir": "data",
            "bundle": "bundle",
            "source": {**section, "frames": 0},
        })
    except ConfigError as exc:
        print("refused:", exc)
    """
)


def test_every_registered_kind_is_a_valid_source_section(tmp_path: Path) -> None:
    for name, kind in SOURCE_KINDS.items():
        assert kind.config.model_fields["kind"].default == name
    cfg = parse_config(
        {
            "station": {"line": "L1", "station": "S1"},
            "data_dir": str(tmp_path / "data"),
            "bundle": str(tmp_path / "bundle"),
            "source": {"kind": "video", "url": "line.mp4"},
        }
    )
    assert create_source(cfg.source).name == "video"
    with pytest.raises(ConfigError, match="source: Input tag 'fake' found using 'kind'"):
        parse_config(
            {
                "station": {"line": "L1", "station": "S1"},
                "data_dir": str(tmp_path / "data"),
                "bundle": str(tmp_path / "bundle"),
                "source": {"kind": "fake"},
            }
        )


def test_a_kind_added_to_the_registry_alone_is_valid_config_and_built(tmp_path: Path) -> None:
    (tmp_path / "fake_source.py").write_text(FAKE_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-c", WITH_FAKE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "config: FakeSourceConfig (1.0, 30.0)" in proc.stdout
    assert "frames: ['f-0', 'f-1']" in proc.stdout
    assert "refused: invalid configuration: source.fake.frames: Input should be greater" in (
        proc.stdout
    )
