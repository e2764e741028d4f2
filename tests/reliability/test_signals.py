"""Signals an unattended daemon meets: SIGHUP (a closed terminal, ``kill -HUP`` out of habit,
``systemctl reload``) must not end it silently."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.broker import Collector
from tests.inspector.daemon_helpers import TOPIC_ROOT
from tests.reliability.test_crash import START_S, drop_file, start_daemon, station_yaml


@pytest.mark.slow
def test_sighup_is_logged_and_the_daemon_keeps_inspecting(
    tmp_path: Path, broker, line_bundle: Path
) -> None:
    config = station_yaml(tmp_path, line_bundle, broker.port)
    incoming, log = tmp_path / "incoming", tmp_path / "daemon.log"
    collector = Collector(broker, TOPIC_ROOT)
    proc = start_daemon(config, log)
    try:
        drop_file(incoming, "HUP-1", seed=1)
        collector.wait_for("result", 1, timeout=START_S, where=lambda r: r["cell_id"] == "HUP-1")
        proc.send_signal(signal.SIGHUP)
        drop_file(incoming, "HUP-2", seed=2)
        collector.wait_for("result", 1, timeout=60, where=lambda r: r["cell_id"] == "HUP-2")
        assert proc.poll() is None, log.read_text()
        assert "SIGHUP ignored" in log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
        last = collector.wait_for("status", where=lambda p: p["state"] == "offline")[-1]
        assert last["detail"] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        collector.close()
