"""The data directory fills up: a real 20 MB tmpfs under the daemon's store.

Retention (sized below what the test writes) deletes only published, explained results;
below the free-space floor the daemon alarms and keeps storing and publishing verdicts, without
the reject pictures. The test needs root to mount the tmpfs (it is skipped, saying so, without).
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from inspector.sources.base import Frame
from inspector.station.daemon import Daemon
from inspector.store.db import Store
from tests.broker import Collector
from tests.inspector.daemon_helpers import TOPIC_ROOT, QueueSource, bad_image, make_config, running
from tests.reliability.fs_wait import wait_until

TMPFS_MB = 20
RETAIN_MB = 4  # retention's size limit, well below what the outage writes
FLOOR_MB = 8  # free space below which reject pictures are not saved


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 20 MB tmpfs mounted where the data directory goes."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "data"
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(path)], check=True
    )
    yield path
    subprocess.run(["umount", str(path)], check=True)


def rejects_in(store: Store) -> dict[str, dict]:
    return {r["frame_id"]: r for r in store.rejects(limit=10_000)}


def explain_all(data_dir: Path) -> int:
    """Close every explanation job and mark it published, as the explainer process would
    (same database) once the broker acknowledged the explanation."""
    store, n = Store(data_dir), 0
    try:
        while (job := store.claim_job()) is not None:
            store.finish_job(job.id, "foreign particle", "test")
            store.explanations.mark_published([r["id"] for r in store.explanations.unpublished()])
            n += 1
    finally:
        store.close()
    return n


@pytest.mark.slow
def test_a_full_disk_keeps_unpublished_results_and_publishes_verdicts_without_pictures(
    tmp_path: Path, small_disk: Path, broker, line_bundle: Path
) -> None:
    source = QueueSource()
    cfg = make_config(
        tmp_path,
        line_bundle,
        broker.port,
        retention={
            "max_disk_gb": RETAIN_MB / 1e3,
            "check_every_s": 0.2,
            "disk_low_alarm_gb": FLOOR_MB / 1e3,
        },
    )
    assert cfg.data_dir == small_disk
    stored = threading.Semaphore(0)
    collector = Collector(broker, TOPIC_ROOT, client_id="disk-collector")
    daemon = Daemon(cfg, source=source, on_result=lambda *_: stored.release())
    try:
        with running(daemon):
            # 1. a few rejects published and explained: retention may delete these
            early = [f"EARLY-{i}" for i in range(4)]
            for i, cell in enumerate(early):
                source.push(Frame(cell, bad_image(i)))
            collector.wait_for("result", len(early))
            assert daemon.outbox.flush(10)
            daemon.store.flush_files()
            assert explain_all(cfg.data_dir) == len(early)
            early_frames = list(rejects_in(daemon.store))

            # 2. the broker goes away: nothing may be deleted now, and the disk fills up
            broker.stop()
            late = [f"LATE-{i:02d}" for i in range(30)]
            for i, cell in enumerate(late):
                source.push(Frame(cell, bad_image(100 + i)))
                if i == 7:  # over retention's limit, still above the floor
                    for _ in range(len(early) + 8):
                        assert stored.acquire(timeout=60)
                    wait_until(
                        small_disk,
                        lambda: (
                            not any(
                                r["cell_id"] in early for r in rejects_in(daemon.store).values()
                            )
                        ),
                        30,
                        "retention frees the published, explained rejects",
                    )
            for _ in range(len(late) - 8):
                assert stored.acquire(timeout=60)
            daemon.store.flush_files()
            kept = rejects_in(daemon.store)
            assert daemon.store.backlog() == len(late)
            assert sorted(r["cell_id"] for r in kept.values() if r["cell_id"] in late) == late
            assert not any(p.name.startswith(tuple(early_frames)) for p in small_disk.rglob("*"))
            with_pictures = [r for r in kept.values() if r["image_path"] is not None]
            without = [r for r in kept.values() if r["image_path"] is None]
            assert with_pictures and without, (len(with_pictures), len(without))
            assert all(r["image_path"].is_file() and r["map_path"].is_file() for r in with_pictures)
            newest_with = max(r["cell_id"] for r in with_pictures)
            assert all(r["cell_id"] > newest_with for r in without), "pictures stop at the floor"
            print(f"{len(with_pictures)} rejects kept with pictures, {len(without)} without")
            assert "disk" in daemon.faults

            # 3. the broker returns: every verdict arrives once per frame_id, in order
            broker.start()
            results = collector.wait_for(
                "result", len(late), timeout=60, where=lambda r: r["cell_id"] in late
            )
            assert daemon.outbox.flush(30)
            first = list(dict.fromkeys(r["cell_id"] for r in results))
            assert first == late and all(r["verdict"] == "fail" for r in results)
            alarm = collector.wait_for("alarm", where=lambda a: a["kind"] == "disk_low")[0]
            assert alarm["severity"] == "critical" and "not saved" in alarm["message"]
            collector.wait_for("status", where=lambda p: p["state"] == "degraded")

            # 4. explained and published: retention frees the disk and the fault clears
            onlines = len([p for p in collector.on("status") if p["state"] == "online"])
            explain_all(cfg.data_dir)
            collector.wait_for(
                "status", onlines + 1, where=lambda p: p["state"] == "online", timeout=30
            )
            assert daemon.store.free_bytes() / 1e6 > FLOOR_MB
    finally:
        collector.close()
