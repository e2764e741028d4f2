"""A clean stop is not an incident: the daemon, ``explain --once`` and the web page end without
a log line at WARNING or above (a journal alert on every restart hides the real ones)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
from pathlib import Path

import cv2
import yaml

from inspector.store.db import Store
from tests.broker import Broker, Collector
from tests.cli_helpers import INSPECTOR
from tests.inspector.daemon_helpers import TOPIC_ROOT, good_image
from tests.inspector.explain.test_worker import record_reject

STARTUP_S = 180  # importing torch on a loaded 2-core box
LEVEL = re.compile(r"^(DEBUG|INFO)\b")  # our text log lines and uvicorn's start with the level
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "INSPECTOR_WEB_STOP_TOKEN": "t-51"}


def station_yaml(tmp_path: Path, bundle: Path, port: int) -> Path:
    cfg = {
        "station": {"line": "L1", "station": "S1"},
        "data_dir": "data",
        "bundle": str(bundle),
        "source": {"kind": "hotfolder", "folder": "incoming", "settle_s": 0.3},
        "mqtt": {"host": "127.0.0.1", "port": port, "heartbeat_s": 1},
        "health": {"metrics_port": None, "log_format": "text"},
        "web": {"token_env": "INSPECTOR_WEB_STOP_TOKEN"},
    }
    (tmp_path / "incoming").mkdir()
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def alerts(log: str) -> list[str]:
    """Lines above INFO: our own and uvicorn's by their level, and any line without a level
    (Python's last-resort handler prints a library's WARNING and ERROR bare); progress bars
    of ``explain --once`` aside."""
    lines = re.split(r"[\r\n]+", log)
    return [x for x in lines if x.strip() and not LEVEL.match(x) and "%|" not in x]


def test_the_daemon_stops_on_sigterm_without_a_warning(
    tmp_path: Path, broker: Broker, line_bundle: Path
) -> None:
    collector = Collector(broker, TOPIC_ROOT)
    config = station_yaml(tmp_path, line_bundle, broker.port)
    proc = subprocess.Popen(
        [INSPECTOR, "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
    )  # fmt: skip
    try:
        collector.wait_for("status", where=lambda p: p["state"] == "online", timeout=STARTUP_S)
        cv2.imwrite(str(tmp_path / "incoming" / "C-1.png"), good_image(3))
        collector.wait_for("result", timeout=60)
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=60)
        collector.wait_for("status", where=lambda p: p["state"] == "offline")
    finally:
        proc.kill()
        collector.close()
    assert proc.returncode == 0, log
    assert "INFO inspector.station.daemon: stopped" in log
    assert alerts(log) == [], log


def test_explain_once_ends_without_a_warning(
    tmp_path: Path, broker: Broker, tiny_bundle: Path
) -> None:
    store = Store(tmp_path / "data")
    record_reject(store, "f1", (140, 10, 40, 40))
    store.close()
    config = station_yaml(tmp_path, tiny_bundle, broker.port)
    collector = Collector(broker, TOPIC_ROOT)
    try:
        proc = subprocess.run(
            [INSPECTOR, "explain", "--config", str(config), "--once"],
            capture_output=True, text=True, timeout=300, env=ENV,
        )  # fmt: skip
        collector.wait_for("explanation")
    finally:
        collector.close()
    assert proc.returncode == 0, proc.stderr
    assert "explained 1 reject(s) with template;" in proc.stdout
    assert "failed" not in proc.stdout  # the template is the backend: nothing failed
    assert alerts(proc.stderr) == [], proc.stderr


def test_the_web_page_stops_on_sigterm_without_a_warning(tmp_path: Path, tiny_bundle: Path) -> None:
    config = station_yaml(tmp_path, tiny_bundle, 1883)
    proc = subprocess.Popen(
        [INSPECTOR, "serve", "--config", str(config), "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        while not any("running on http://" in line for line in seen):
            seen.append(lines.get(timeout=STARTUP_S))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(10)
    finally:
        proc.kill()
    while not lines.empty():
        seen.append(lines.get_nowait())
    log = "".join(seen)
    assert proc.returncode in (0, -signal.SIGTERM), log  # uvicorn re-raises it: systemd's clean
    assert alerts(log) == [], log
