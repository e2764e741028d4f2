"""A runtime is one module plus one line in ``BACKENDS``: config, CLI help and the engine check
take their backend names from the registry, and so does a recipe that is run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inspector.config.station import ConfigError, parse_config
from inspector.runtime.backends import BACKENDS, backend_spec
from inspector.station.engine_check import FP32_FAMILY, INT8_BACKENDS

REPO = Path(__file__).resolve().parents[4]

FAKE_MODULE = '''
"""A runtime that finds nothing: every map is zero."""

import numpy as np

from inspector.runtime.backends.base import Backend


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, bundle, **options):
        self.bundle = bundle

    def infer(self, batch):
        n, size = len(batch), batch.shape[-1]
        return np.zeros((n, size, size), np.float32), np.zeros(n, np.float32)
'''

WITH_FAKE = textwrap.dedent(
    """
    import sys

    from inspector.runtime.backends import BACKENDS, BackendSpec, create_backend

    BACKENDS["fake"] = BackendSpec("fake_backend:FakeBackend")  # the one registry line

    from inspector.config.station import parse_config

    cfg = parse_config({
        "station": {"line": "L1", "station": "S1"},
        "data_dir": "data",
        "bundle": "bundle",
        "backend": "fake",
        "source": {"kind": "hotfolder", "folder": "incoming"},
    })
    print("config backend:", cfg.backend)
    print("created:", type(create_backend("fake", "bundle")).__name__)
    sys.argv = ["inspector", *sys.argv[1:]]
    from inspector.cli import main

    main()
    """
)


def config_with_backend(tmp_path: Path, backend: str) -> dict:
    return {
        "station": {"line": "L1", "station": "S1"},
        "data_dir": str(tmp_path / "data"),
        "bundle": str(tmp_path / "bundle"),
        "backend": backend,
        "source": {"kind": "hotfolder", "folder": str(tmp_path / "incoming")},
    }


def test_the_config_takes_exactly_the_registered_backends_and_auto(tmp_path: Path) -> None:
    for name in (*BACKENDS, "auto"):
        assert parse_config(config_with_backend(tmp_path, name)).backend == name
    with pytest.raises(ConfigError, match="backend: Input should be 'torch'.* or 'auto'"):
        parse_config(config_with_backend(tmp_path, "fake"))


def test_an_unknown_backend_names_those_there_are() -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'fake'; available: \[.*'tensorrt'"):
        backend_spec("fake")


def test_the_engine_check_takes_its_families_from_the_registry() -> None:
    assert set(FP32_FAMILY) == {name for name, spec in BACKENDS.items() if spec.auto}
    assert set(INT8_BACKENDS) == {name for name, spec in BACKENDS.items() if spec.int8}
    assert not set(FP32_FAMILY) & set(INT8_BACKENDS) and "torch" not in FP32_FAMILY


@pytest.mark.parametrize("command", ["predict", "calibrate", "evaluate"])
def test_a_backend_added_to_the_registry_alone_is_valid_config_and_named_in_help(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / "fake_backend.py").write_text(FAKE_MODULE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
        "COLUMNS": "300",
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", WITH_FAKE, command, "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "config backend: fake" in proc.stdout and "created: FakeBackend" in proc.stdout
    assert "openvino-int8, tensorrt or fake (default:" in proc.stdout  # --backend's help
