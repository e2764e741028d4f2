"""``inspector run`` and ``inspector demo`` as processes: hot folder in, MQTT out, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import cv2
import pytest
import yaml

from tests.broker import Broker, Collector
from tests.cli_helpers import INSPECTOR, run_inspector
from tests.inspector.daemon_helpers import TOPIC_ROOT, bad_image, good_image

STARTUP_S = 180  # importing torch on a loaded 2-core box


def station_yaml(tmp_path: Path, bundle: Path, port: int) -> Path:
    cfg = {
        "station": {"line": "L1", "station": "S1"},
        "data_dir": "data",
        "bundle": str(bundle),
        "source": {
            "kind": "hotfolder",
            "folder": "incoming",
            "cell_id_pattern": r"^(?P<cell_id>[A-Z0-9-]+)\.",
            "settle_s": 0.3,
            "corrupt_after_s": 1.0,
        },
        "mqtt": {"host": "127.0.0.1", "port": port, "heartbeat_s": 1},
        "health": {"metrics_port": None, "log_format": "json"},
    }
    (tmp_path / "incoming").mkdir()
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_daemon(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as out:
        return subprocess.Popen(
            [INSPECTOR, "run", "--config", str(config)], stdout=out, stderr=out, env=env
        )


def encoded_png(image) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def test_a_bad_config_stops_the_start_with_the_key_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "station: {line: L1, station: S1}\ndata_dir: d\nbundle: b\n"
        "source: {kind: hotfolder, folder: in}\nmqtt: {port: 99999}\npipeline: {max_bacth: 4}\n"
    )
    proc = run_inspector("run", "--config", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "mqtt.port: Input should be less than or equal to 65535" in lines[0]
    assert "pipeline.max_bacth: Extra inputs are not permitted" in lines[0]


def test_check_validates_the_config_and_the_bundle_without_starting(
    tmp_path: Path, line_bundle: Path
) -> None:
    config = station_yaml(tmp_path, line_bundle, 1883)
    proc = run_inspector("run", "--config", str(config), "--check")
    assert proc.returncode == 0, proc.stderr
    assert "OK (station L1/S1)" in proc.stdout
    config.write_text(config.read_text().replace(str(line_bundle), str(tmp_path / "nope")))
    proc = run_inspector("run", "--config", str(config), "--check")
    assert proc.returncode == 2 and "is not a model bundle" in proc.stderr


def test_hot_folder_files_become_results_and_sigterm_stops_cleanly(
    tmp_path: Path, broker: Broker, line_bundle: Path
) -> None:
    collector = Collector(broker, TOPIC_ROOT)
    config = station_yaml(tmp_path, line_bundle, broker.port)
    proc = start_daemon(config, tmp_path / "daemon.log")
    try:
        collector.wait_for("status", where=lambda p: p["state"] == "online", timeout=STARTUP_S)
        incoming = tmp_path / "incoming"
        # a scanner writing slowly: the file must be taken only once it is complete
        data = encoded_png(good_image(8))
        with (incoming / "SLOW-1.png").open("wb") as f:
            for i in range(0, len(data), len(data) // 4 + 1):
                f.write(data[i : i + len(data) // 4 + 1])
                f.flush()
                time.sleep(0.2)  # the writer's pace, not a synchronisation
        (incoming / "BAD-2.png").write_bytes(encoded_png(bad_image(8)))
        (incoming / "CORRUPT-3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0garbage" * 100)
        results = {r["cell_id"]: r for r in collector.wait_for("result", 3, timeout=60)}
        assert results["SLOW-1"]["verdict"] == "pass"
        assert results["BAD-2"]["verdict"] == "fail"
        assert results["CORRUPT-3"]["verdict"] == "error"
        assert collector.wait_for("heartbeat", where=lambda h: h["frames"] >= 3)
        assert proc.poll() is None, "the daemon still runs after the corrupt file"
        assert (incoming / "failed" / "CORRUPT-3.png").exists()
        assert (incoming / "done" / "SLOW-1.png").exists()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        offline = collector.wait_for("status", where=lambda p: p["state"] == "offline")[0]
        assert offline["detail"] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
        collector.close()
    log = (tmp_path / "daemon.log").read_text()
    assert '"level": "info"' in log, "structured JSON log lines"
    assert len(collector.on("result")) == 3, "nothing published twice or lost"


@pytest.mark.slow
def test_a_killed_daemon_goes_offline_through_its_will(
    tmp_path: Path, broker: Broker, line_bundle: Path
) -> None:
    collector = Collector(broker, TOPIC_ROOT)
    proc = start_daemon(station_yaml(tmp_path, line_bundle, broker.port), tmp_path / "d.log")
    try:
        collector.wait_for("status", where=lambda p: p["state"] == "online", timeout=STARTUP_S)
        # the availability link connects on its own: its will exists once it said online
        collector.wait_for("availability", where=lambda p: p == "online", timeout=STARTUP_S)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        will = collector.wait_for("status", where=lambda p: p["state"] == "offline", timeout=30)
        assert will[0]["detail"] == "connection lost"
        # the plain availability topic has its own connection and will
        assert collector.wait_for("availability", where=lambda p: p == "offline", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        collector.close()


def test_demo_without_a_broker_prints_a_line_per_cell_and_stores_them(tmp_path: Path) -> None:
    proc = run_inspector("demo", "--frames", "4", "--work-dir", str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("DEMO-")]
    assert [ln.split()[0] for ln in lines] == [f"DEMO-{i:04d}" for i in range(4)]
    assert all(ln.split()[1] in ("PASS", "FAIL") for ln in lines)
    assert "planted defect: scratch" in lines[2]
    assert "4 cells in" in proc.stdout
    assert (tmp_path / "demo" / "data" / "inspector.db").exists()


def test_demo_publishes_its_verdicts_to_a_broker(tmp_path: Path, broker: Broker) -> None:
    collector = Collector(broker, "inspector/v1/demo/station-1/")
    proc = subprocess.run(
        [INSPECTOR, "demo", "--frames", "3", "--broker", broker.url, "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    results = collector.wait_for("result", 3)
    collector.close()
    assert [r["cell_id"] for r in results] == ["DEMO-0000", "DEMO-0001", "DEMO-0002"]
    assert all(r["source"]["kind"] == "pylon" for r in results)
