"""The daemon SIGKILLed at random points of a run, again and again: nothing is lost.

A real ``inspector run`` process reads a scanner hot folder and publishes to a real Mosquitto.
Each cycle drops new image files into the folder, starts the daemon and kills it (SIGKILL, no
chance to flush) at a random point: during start-up, or a random few milliseconds after a
random number of this cycle's results reached the subscriber. A kill is the nearest thing to a
power cut a test can make here; it does not drop the OS page cache, which a real power cut
does (``synchronous=NORMAL`` in WAL mode may then lose the last commits, never consistency).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import cv2
import pytest
import yaml

from tests.broker import Collector
from tests.cli_helpers import INSPECTOR
from tests.inspector.daemon_helpers import TOPIC_ROOT, bad_image, good_image
from tests.reliability.fs_wait import wait_until

KILLS = 20
FILES_PER_CYCLE = 3
START_S = 180  # importing torch on a loaded 2-core box


def station_yaml(tmp_path: Path, bundle: Path, port: int) -> Path:
    cfg = {
        "station": {"line": "L1", "station": "S1"},
        "data_dir": str(tmp_path / "data"),
        "bundle": str(bundle),
        "source": {
            "kind": "hotfolder",
            "folder": str(tmp_path / "incoming"),
            "cell_id_pattern": r"^(?P<cell_id>[A-Z0-9-]+)\.",
            "settle_s": 0.05,
            "corrupt_after_s": 1.0,
        },
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "heartbeat_s": 0.5,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
        },
        "health": {"metrics_port": None, "log_format": "text"},
    }
    (tmp_path / "incoming").mkdir()
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def drop_file(folder: Path, cell: str, seed: int) -> None:
    """Write an image as the scanner would: under a temporary name, then renamed into place."""
    image = bad_image(seed) if seed % 4 == 0 else good_image(seed)
    tmp = folder / f"{cell}.part"  # not a watched suffix until it is complete
    ok, png = cv2.imencode(".png", image)
    assert ok
    tmp.write_bytes(png.tobytes())
    os.replace(tmp, folder / f"{cell}.png")


def start_daemon(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("a") as out:
        return subprocess.Popen(
            [INSPECTOR, "run", "--config", str(config)], stdout=out, stderr=out, env=env
        )


def stored_rows(data_dir: Path) -> dict[str, dict]:
    """frame_id -> {cell_id, published} of every stored result; the database must be sound."""
    db = sqlite3.connect(data_dir / "inspector.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT frame_id, cell_id, published_at FROM results").fetchall()
    finally:
        db.close()
    return {f: {"cell_id": c, "published": p is not None} for f, c, p in rows}


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_result_and_repeats_only_with_the_same_frame_id(
    tmp_path: Path, broker, line_bundle: Path
) -> None:
    rng = random.Random(20261125)
    config = station_yaml(tmp_path, line_bundle, broker.port)
    incoming, data_dir, log = tmp_path / "incoming", tmp_path / "data", tmp_path / "daemon.log"
    collector = Collector(broker, TOPIC_ROOT, client_id="crash-collector")
    cells: list[str] = []
    seen_before: dict[str, dict] = {}
    try:
        for cycle in range(KILLS):
            batch = [f"K{cycle:02d}-{i}" for i in range(FILES_PER_CYCLE)]
            for i, cell in enumerate(batch):
                drop_file(incoming, cell, seed=cycle * FILES_PER_CYCLE + i)
            cells += batch
            proc = start_daemon(config, log)
            wanted = rng.randint(-1, FILES_PER_CYCLE)  # -1: kill while it starts up
            if wanted < 0:
                time.sleep(rng.uniform(0.0, 2.0))  # the random kill point, not a synchronisation
            else:
                collector.wait_for(
                    "result", wanted, timeout=START_S, where=lambda r, b=batch: r["cell_id"] in b
                )
                time.sleep(rng.uniform(0.0, 0.05))  # the random kill point
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            if not data_dir.joinpath("inspector.db").exists():
                continue  # killed before it created its database
            rows = stored_rows(data_dir)  # opens, and integrity_check passes
            assert set(seen_before) <= set(rows), "a stored result vanished after a kill"
            seen_before = rows

        onlines = len(collector.on("status"))
        proc = start_daemon(config, log)  # the last start runs to the end
        collector.wait_for("status", onlines + 1, timeout=START_S)  # its SIGTERM handler is set
        wait_until(
            incoming,
            lambda: not list(incoming.glob("*.png")),
            START_S,
            "every file inspected and filed away",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        # the clean stop flushes the outbox, then says offline: what it sent came before that
        collector.wait_for("status", where=lambda p: p["detail"] == "stopped", timeout=30)
        received = collector.on("result")
    finally:
        collector.close()
        if proc.poll() is None:
            proc.kill()

    rows = stored_rows(data_dir)
    assert all(r["published"] for r in rows.values()), "the outbox drained after the restarts"
    assert sorted(os.listdir(incoming / "done")) == sorted(f"{c}.png" for c in cells)
    by_frame: dict[str, list[dict]] = defaultdict(list)
    for r in received:
        by_frame[r["frame_id"]].append(r)
    assert set(by_frame) == set(rows), "every stored result reached the subscriber, none other"
    for frame_id, copies in by_frame.items():
        assert all(c == copies[0] for c in copies), f"{frame_id} repeated with other content"
    frames_per_cell = defaultdict(set)
    for frame_id, copies in by_frame.items():
        frames_per_cell[copies[0]["cell_id"]].add(frame_id)
    assert sorted(frames_per_cell) == sorted(cells), "every cell has a result"
    twice = {c: f for c, f in frames_per_cell.items() if len(f) > 1}
    assert not twice, f"cells inspected again after a kill, under a new frame_id: {twice}"
    repeats = sum(len(c) - 1 for c in by_frame.values())
    print(f"{KILLS} kills, {len(cells)} cells, {len(received)} deliveries, {repeats} repeats")
