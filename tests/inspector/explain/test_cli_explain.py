"""``inspector explain`` as a process: store in, explanations out on a real broker."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import yaml

from inspector.store.db import Store
from tests.broker import Broker, Collector, free_port
from tests.cli_helpers import INSPECTOR, run_inspector
from tests.inspector.explain.test_worker import record_reject

ROOT = "inspector/v1/L1/S1/"


def station_yaml(tmp_path: Path, bundle: Path, port: int, explainer: dict) -> Path:
    cfg = {
        "station": {"line": "L1", "station": "S1"},
        "data_dir": "data",
        "bundle": str(bundle),
        "source": {"kind": "hotfolder", "folder": "incoming"},
        "mqtt": {"host": "127.0.0.1", "port": port},
        "health": {"metrics_port": None, "log_format": "text"},
        "explainer": explainer,
    }
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_explain_once_falls_back_to_the_template_and_publishes(
    tmp_path: Path, broker: Broker, tiny_bundle: Path
) -> None:
    store = Store(tmp_path / "data")
    record_reject(store, "f1", (140, 10, 40, 40))
    record_reject(store, "f2", (10, 180, 30, 30))
    store.close()
    dead_server = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    explainer = {
        "backend": "openai",
        "openai": {"base_url": dead_server, "timeout_s": 5},
        "retry": {"max_attempts": 1},
    }
    config = station_yaml(tmp_path, tiny_bundle, broker.port, explainer)
    collector = Collector(broker, ROOT)
    try:
        proc = subprocess.run(
            [INSPECTOR, "explain", "--config", str(config), "--once"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert proc.returncode == 0, proc.stderr
        got = collector.wait_for("explanation", count=2, timeout=30)
    finally:
        collector.close()
    assert [m["frame_id"] for m in got] == ["f1", "f2"]
    assert {m["backend"] for m in got} == {"template"}
    assert "Region 1 (upper centre)" in got[0]["text"]
    assert "Region 1 (lower left)" in got[1]["text"]
    said = "explained 2 reject(s) with openai, 2 from the facts after the openai backend failed"
    assert said in proc.stdout
    store = Store(tmp_path / "data")
    assert store.explanation("f2")["text"] == got[1]["text"] and store.pending_jobs() == 0
    store.close()


def test_a_batterygpt_config_without_a_model_folder_is_one_clear_line(tmp_path: Path) -> None:
    config = station_yaml(tmp_path, tmp_path / "bundle", free_port(), {"backend": "batterygpt"})
    proc = run_inspector("explain", "--config", str(config))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "explainer: backend 'batterygpt' needs batterygpt.llm_path" in proc.stderr


def test_the_worker_explains_rejects_as_they_come_and_stops_on_sigterm(
    tmp_path: Path, broker: Broker, tiny_bundle: Path
) -> None:
    config = station_yaml(tmp_path, tiny_bundle, broker.port, {"poll_interval_s": 0.2})
    store = Store(tmp_path / "data")
    record_reject(store, "f1", (10, 10, 30, 30))
    collector = Collector(broker, ROOT)
    log = (tmp_path / "explain.log").open("w")
    proc = subprocess.Popen(
        [INSPECTOR, "explain", "--config", str(config)],
        stdout=log,
        stderr=log,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        first = collector.wait_for("explanation", timeout=180)[0]
        record_reject(store, "f2", (250, 180, 40, 40))  # queued while the worker runs
        second = collector.wait_for("explanation", count=2, timeout=60)[1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        collector.close()
        log.close()
        store.close()
    assert (first["frame_id"], second["frame_id"]) == ("f1", "f2")
    assert "Region 1 (lower right)" in second["text"] and second["backend"] == "template"
    assert "explained 2 reject(s)" in (tmp_path / "explain.log").read_text()


def test_a_model_that_fails_to_load_leaves_the_template_in_charge(monkeypatch) -> None:
    import pytest

    import inspector.explain.writers as writers
    from inspector.cli.explain import _load_writer
    from inspector.explain.config import ExplainerConfig

    class Cfg:
        explainer = ExplainerConfig(backend="openai")
        bundle = None

    def out_of_memory(*args):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(writers, "create_writer", out_of_memory)
    assert _load_writer(Cfg()).name == "template"

    def no_transformers(*args):
        raise ImportError("No module named 'transformers'")

    monkeypatch.setattr(writers, "create_writer", no_transformers)
    with pytest.raises(ValueError, match="needs the llm extra"):
        _load_writer(Cfg())
