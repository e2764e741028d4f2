"""The daemon's data directory under faults: a damaged database, a store that fails while
running, a directory it cannot write, a second daemon on the same directory. Real SQLite
files, a real Mosquitto, the real ``inspector run`` where the exit status matters.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import pytest
import yaml

from inspector.config.station import load_config
from inspector.station.daemon import Daemon
from inspector.store.db import Store
from tests.cli_helpers import run_inspector
from tests.inspector.daemon_helpers import good_image, running


def station_yaml(folder: Path, bundle: Path, port: int) -> Path:
    """A hot-folder station config in ``folder`` (data in ``folder/data``)."""
    (folder / "incoming").mkdir(exist_ok=True)
    cfg = {
        "station": {"line": "L1", "station": "S1"},
        "data_dir": str(folder / "data"),
        "bundle": str(bundle),
        "source": {
            "kind": "hotfolder",
            "folder": str(folder / "incoming"),
            "cell_id_pattern": r"^(?P<cell_id>[A-Z0-9-]+)\.",
            "settle_s": 0.05,
        },
        "mqtt": {"host": "127.0.0.1", "port": port, "heartbeat_s": 0.5}
        | {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "health": {"metrics_port": None, "log_format": "text"},
    }
    path = folder / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def drop(folder: Path, name: str) -> None:
    ok, png = cv2.imencode(".png", good_image(3))
    staging = folder.parent / "staging.tmp"
    staging.write_bytes(png.tobytes())
    os.replace(staging, folder / name)


UNPUBLISHED = [f"U{i}" for i in range(5)]


def a_database(data_dir: Path, rows: int = 3000) -> Path:
    """A real store with published results and, last, five the broker never acknowledged."""
    store = Store(data_dir)
    ids = [
        store.record({"frame_id": f"F{i}", "cell_id": f"C{i}", "verdict": "pass"}, None, None)
        for i in range(rows)
    ]
    store.results.mark_published(ids)
    for cell in UNPUBLISHED:
        store.record({"frame_id": f"F-{cell}", "cell_id": cell, "verdict": "pass"}, None, None)
    store.close()
    return data_dir / "inspector.db"


def overwrite_pages(db: Path) -> None:
    """dd if=/dev/urandom of=inspector.db bs=4096 seek=3 count=4 conv=notrunc"""
    with db.open("r+b") as f:
        f.seek(3 * 4096)
        f.write(os.urandom(4 * 4096))


def truncate(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def not_a_database(db: Path) -> None:
    db.write_text("station notes: this is not a database\n" * 200)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "overwritten pages": overwrite_pages,
    "truncated file": truncate,
    "not a database": not_a_database,
}
SALVAGED = {  # the unpublished results still readable after each kind of damage
    "overwritten pages": UNPUBLISHED,  # the table's leaves at the end are intact
    "truncated file": [],  # they were in the half that is gone
    "not a database": [],
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_database_is_moved_aside_with_an_alarm_and_results_flow_again(
    tmp_path: Path, broker, collector, line_bundle: Path, damage: str
) -> None:
    config = station_yaml(tmp_path, line_bundle, broker.port)
    cfg = load_config(config)
    db = a_database(cfg.data_dir)
    DAMAGE[damage](db)
    damaged_bytes = db.read_bytes()
    incoming = tmp_path / "incoming"
    with running(Daemon(cfg)) as daemon:
        alarm = collector.wait_for("alarm", where=lambda a: a["kind"] == "store_damaged")[0]
        drop(incoming, "AFTER-1.png")
        result = collector.wait_for("result", where=lambda r: r["cell_id"] == "AFTER-1")[0]
        assert daemon.link.status == "online"
        assert daemon.outbox.flush(10)
    salvaged = [r["cell_id"] for r in collector.on("result") if r["cell_id"] in UNPUBLISHED]
    assert salvaged == SALVAGED[damage] and alarm["salvaged"] == len(salvaged)
    assert {r["frame_id"] for r in collector.on("result")} >= {f"F-{c}" for c in salvaged}
    assert alarm["severity"] == "critical"
    aside = Path(alarm["moved_to"])
    assert aside.parent == cfg.data_dir and aside.name.startswith("inspector.db.damaged-")
    assert aside.read_bytes() == damaged_bytes, "kept as it was, for salvage"
    assert result["verdict"] == "pass"
    store = Store(cfg.data_dir)
    unpublished = store.results.unpublished()
    assert [r["cell_id"] for r in unpublished] == [], "published from the fresh store"
    assert store.backlog() == 0
    store.close()


@pytest.mark.slow
def test_a_store_that_fails_while_running_degrades_the_status_with_one_alarm(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    cfg = load_config(station_yaml(tmp_path, line_bundle, broker.port))
    incoming = tmp_path / "incoming"
    with running(Daemon(cfg)) as daemon:
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        # every insert fails from now on, as on a damaged page or a full disk
        with sqlite3.connect(cfg.data_dir / "inspector.db") as db:
            db.execute(
                "CREATE TRIGGER broken BEFORE INSERT ON results"
                " BEGIN SELECT RAISE(ABORT, 'database disk image is malformed'); END"
            )
        db.close()
        for i in range(3):
            drop(incoming, f"LOST-{i}.png")
        collector.wait_for("status", where=lambda p: p["state"] == "degraded", timeout=60)
        for i in range(3):  # each file is kept, in failed/, for re-inspection
            target = incoming / "failed" / f"LOST-{i}.png"
            wait_for_path(incoming, target)
        with sqlite3.connect(cfg.data_dir / "inspector.db") as db:
            db.execute("DROP TRIGGER broken")
        db.close()
        drop(incoming, "AFTER-1.png")
        collector.wait_for("result", where=lambda r: r["cell_id"] == "AFTER-1")
        collector.wait_for("alarm", where=lambda a: a["kind"] == "store_restored")
        assert daemon.link.status == "online"
    failed = [a for a in collector.on("alarm") if a["kind"] == "store_failed"]
    assert len(failed) == 1, "one alarm when the fault begins, not one per result"
    assert "malformed" in failed[0]["message"] and failed[0]["severity"] == "critical"
    degraded = [p for p in collector.on("status") if p["state"] == "degraded"]
    assert "store" in degraded[0]["detail"]


def wait_for_path(folder: Path, path: Path) -> None:
    from tests.reliability.fs_wait import wait_until

    wait_until(folder, path.exists, 30, f"{path.name} in failed/")


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A folder that another user may enter (pytest's own tmp folders are root-only)."""
    folder = Path(tempfile.mkdtemp(prefix="inspector-datadir-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def run_as_other_user(*args: str) -> subprocess.CompletedProcess:
    """``inspector ARGS`` as user nobody when running as root (root may write anywhere)."""
    if os.geteuid() != 0:
        return run_inspector(*args, timeout=120)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot test an unwritable folder")
    return run_inspector(
        *args,
        timeout=120,
        prefix=[setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"],
    )


def test_an_unwritable_data_dir_stops_the_start_in_one_line(
    world_readable_dir: Path, line_bundle: Path
) -> None:
    config = station_yaml(world_readable_dir, line_bundle, 1)
    data = world_readable_dir / "data"
    data.mkdir(mode=0o555)
    data.chmod(0o555)
    done = run_as_other_user("run", "--config", str(config))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: data_dir {data} is not writable: Permission denied"], done.stderr


@pytest.mark.slow
def test_a_second_daemon_on_the_same_data_dir_exits_2_and_the_first_runs_on(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    config = station_yaml(tmp_path, line_bundle, broker.port)
    with running(Daemon(load_config(config))) as first:
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        second = run_inspector("run", "--config", str(config), timeout=120)
        drop(tmp_path / "incoming", "AFTER-1.png")
        collector.wait_for("result", where=lambda r: r["cell_id"] == "AFTER-1")
        assert first.link.connected.is_set()
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    data = tmp_path / "data"
    assert lines[0] == (
        f"error: data_dir {data} is in use by another inspector run (pid {os.getpid()});"
        " only one daemon may use a data directory"
    )
    assert len(collector.on("result")) == 1
    statuses = [p["state"] for p in collector.on("status")]
    assert "offline" not in statuses[:-1], "the second one never knocked the first off"
