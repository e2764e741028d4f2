"""File handles and store upkeep: idle clients of the metrics port cannot take the daemon's
file handles, and store upkeep that fails turns the status degraded while heartbeats go on."""

from __future__ import annotations

import selectors
import socket
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path

from inspector.sources.base import Frame
from inspector.station.daemon import Daemon
from inspector.station.metrics import METRICS_TIMEOUT_S
from tests.inspector.daemon_helpers import QueueSource, good_image, make_config, running

IDLE_CLIENTS = 60


def closed_by_server(socks: list[socket.socket], timeout: float) -> int:
    """How many of ``socks`` the server closes (EOF or reset) within ``timeout`` seconds."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    closed, deadline = 0, time.monotonic() + timeout
    while closed < len(socks) and (left := deadline - time.monotonic()) > 0:
        for key, _ in sel.select(left):
            try:
                data = key.fileobj.recv(4096)
            except ConnectionError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                closed += 1
    sel.close()
    return closed


def test_idle_metrics_clients_are_dropped_and_the_line_goes_on(
    tmp_path: Path, line_bundle: Path
) -> None:
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, None, health={"metrics_port": 0})
    stored: list[dict] = []
    done = threading.Semaphore(0)
    daemon = Daemon(
        cfg, source=source, on_result=lambda _r, p, _f: (stored.append(p), done.release())
    )
    idle: list[socket.socket] = []
    with running(daemon):
        port = daemon.metrics.port
        try:
            # connect and say nothing (or half a request), as a port scanner or a hung
            # scraper does
            for i in range(IDLE_CLIENTS):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                if i % 2:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                idle.append(s)
            source.push(Frame("FH-1", good_image()))
            assert done.acquire(timeout=60)
            assert stored[-1]["verdict"] == "pass"
            # every idle connection is closed by the station, none is kept open for good
            assert closed_by_server(idle, 3 * METRICS_TIMEOUT_S) == IDLE_CLIENTS
        finally:
            for s in idle:
                s.close()
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        assert b"inspector_frames_total 1.0" in text


def test_failing_store_upkeep_degrades_the_status_and_heartbeats_go_on(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, broker.port)
    done = threading.Semaphore(0)
    daemon = Daemon(cfg, source=source, on_result=lambda *_: done.release())
    with running(daemon):
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        source.push(Frame("WAL-1", good_image()))
        assert done.acquire(timeout=60)
        (cfg.data_dir / "inspector.db-wal").unlink()  # someone "cleans up" the data dir
        source.push(Frame("WAL-2", good_image()))
        assert done.acquire(timeout=60)
        degraded = collector.wait_for(
            "status", where=lambda p: p["state"] == "degraded", timeout=30
        )[-1]
        assert "housekeeping" in degraded["detail"]
        alarms = collector.wait_for(
            "alarm", where=lambda a: a["kind"] == "housekeeping_failed", timeout=10
        )
        assert alarms[0]["severity"] == "critical"
        beats = len(collector.on("heartbeat"))
        collector.wait_for("heartbeat", beats + 3, timeout=30)  # the heartbeat goes on
        assert (
            len(collector.wait_for("alarm", where=lambda a: a["kind"] == "housekeeping_failed"))
            == 1
        )
    # a clean stop folds what was written since into the database: nothing is lost
    db = sqlite3.connect(cfg.data_dir / "inspector.db")
    try:
        cells = {row[0] for row in db.execute("SELECT cell_id FROM results")}
    finally:
        db.close()
    assert cells == {"WAL-1", "WAL-2"}
