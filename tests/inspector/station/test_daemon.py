"""The line daemon in-process against a real Mosquitto, real SQLite and pylon's emulated camera."""

from __future__ import annotations

import os

os.environ.setdefault("PYLON_CAMEMU", "2")  # read by pypylon when it is first imported

import hashlib  # noqa: E402
import sqlite3  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from inspector.sources.base import Frame  # noqa: E402
from inspector.station.daemon import Daemon  # noqa: E402
from inspector.store.db import Store  # noqa: E402
from tests.broker import publish  # noqa: E402
from tests.inspector.daemon_helpers import (  # noqa: E402
    TOPIC_ROOT,
    QueueSource,
    bad_image,
    good_image,
    make_config,
    running,
    write_images,
)
from tests.reliability.fs_wait import wait_until  # noqa: E402

RESULT_FIELDS = {
    "schema", "line", "station", "cell_id", "frame_id", "ts", "product", "verdict",
    "image_score", "thresholds", "defect_area_px", "regions", "model_id", "backend",
    "latency_ms", "width", "height",
}  # fmt: skip


def test_each_mqtt_trigger_gives_one_result_from_the_emulated_camera(
    tmp_path: Path,
    broker,
    collector,
    line_bundle,
) -> None:
    folder = write_images(tmp_path / "camera", [good_image(5)])
    source = {"kind": "pylon", "serial": "0815-0000", "emulation_images": str(folder)}
    cfg = make_config(tmp_path, line_bundle, broker.port, source)
    with running(Daemon(cfg)) as daemon:
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        cells = [f"CELL-{i:03d}" for i in range(6)]
        for cell in cells:
            publish(broker, TOPIC_ROOT + "trigger", {"cell_id": cell, "product": "pouch"})
        results = collector.wait_for("result", len(cells))
        assert daemon.outbox.flush(10)
    assert [r["cell_id"] for r in results] == cells
    for r in results:
        assert set(r) >= RESULT_FIELDS, RESULT_FIELDS - set(r)
        assert r["verdict"] == "pass" and r["product"] == "pouch"
        assert r["ts"].endswith("Z") and (r["width"], r["height"]) == (457, 301)
        assert r["thresholds"]["pixel"] == 0.5 and r["source"]["kind"] == "pylon"
    assert len({r["frame_id"] for r in results}) == len(cells)
    store = Store(cfg.data_dir)
    assert store.backlog() == 0, "every result is marked delivered after its PUBACK"
    store.close()
    collector.wait_for("status", where=lambda p: p["state"] == "offline")


def test_a_reject_raises_an_alarm_and_queues_an_explanation_job(
    tmp_path: Path,
    broker,
    collector,
    line_bundle,
) -> None:
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, broker.port)
    with running(Daemon(cfg, source=source)):
        source.push(Frame("GOOD-1", good_image(6)))
        source.push(Frame("BAD-1", bad_image(6), product="pouch"))
        results = collector.wait_for("result", 2)
        alarm = collector.wait_for("alarm", where=lambda a: a["kind"] == "reject")[0]
    verdicts = {r["cell_id"]: r for r in results}
    assert verdicts["GOOD-1"]["verdict"] == "pass"
    bad = verdicts["BAD-1"]
    assert bad["verdict"] == "fail" and bad["regions"]
    x, y, w, h = bad["regions"][0]["bbox"]
    assert x <= 230 <= x + w and y <= 130 <= y + h, "the region covers the pasted patch"
    assert alarm["cell_id"] == "BAD-1" and alarm["severity"] == "warning"
    assert alarm["frame_id"] == bad["frame_id"]

    store = Store(cfg.data_dir)
    job = store.claim_job()
    assert job is not None and job.frame_id == bad["frame_id"] and job.cell_id == "BAD-1"
    assert job.result["regions"] == bad["regions"]
    import cv2

    saved = cv2.imread(str(job.image_path), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(saved, bad_image(6)), "the reject's frame is kept losslessly"
    amap = np.load(job.map_path)
    assert amap.dtype == np.float32 and amap.shape == (301, 457)
    assert store.claim_job() is None, "the pass got no job"
    store.close()
    assert source.acks == [("GOOD-1", True), ("BAD-1", True)]


def test_a_broken_frame_gets_an_error_verdict_and_inspection_goes_on(
    tmp_path: Path,
    broker,
    collector,
    line_bundle,
) -> None:
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, broker.port)
    with running(Daemon(cfg, source=source)):
        source.push(Frame("LOST-1", None, error="grab timed out"))
        source.push(Frame("TINY-1", np.zeros((3, 3), np.uint8)))
        source.push(Frame("OK-1", good_image(7)))
        results = {r["cell_id"]: r for r in collector.wait_for("result", 3)}
        alarms = collector.wait_for("alarm", 2, where=lambda a: a["kind"] == "frame_error")
    assert results["LOST-1"]["verdict"] == "error"
    assert results["LOST-1"]["error"] == "grab timed out"
    assert results["TINY-1"]["verdict"] == "error" and "smaller than" in results["TINY-1"]["error"]
    assert results["OK-1"]["verdict"] == "pass"
    assert {a["cell_id"] for a in alarms} == {"LOST-1", "TINY-1"}
    assert ("LOST-1", False) in source.acks and ("OK-1", True) in source.acks


def test_a_bad_trigger_is_alarmed_and_the_next_good_one_still_works(
    tmp_path: Path,
    broker,
    collector,
    line_bundle,
) -> None:
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, broker.port)
    with running(Daemon(cfg, source=source)):
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        for bad in (b"not json", b'{"cell_id": 42}', b'{"cell_id": "a/b#"}', b"[]"):
            publish(broker, TOPIC_ROOT + "trigger", bad)
        publish(broker, TOPIC_ROOT + "trigger", {"cell_id": "C-77"})
        result = collector.wait_for("result")[0]
        alarms = collector.wait_for("alarm", 4, where=lambda a: a["kind"] == "bad_trigger")
    assert result["cell_id"] == "C-77"
    assert any("not JSON" in a["message"] for a in alarms)
    assert any("cell_id must be" in a["message"] for a in alarms)


def test_a_lost_camera_is_alarmed_degrades_the_status_and_is_reopened(
    tmp_path: Path,
    broker,
    collector,
    line_bundle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = QueueSource()
    video = {"kind": "video", "url": "unused", "reconnect_backoff_s": 0.3}
    cfg = make_config(tmp_path, line_bundle, broker.port, video)
    caplog.set_level("INFO", logger="inspector")
    with running(Daemon(cfg, source=source)):
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        source.lose_device()
        lost = collector.wait_for("alarm", where=lambda a: a["kind"] == "source_lost")[0]
        collector.wait_for("status", where=lambda p: p["state"] == "degraded")
        collector.wait_for("alarm", where=lambda a: a["kind"] == "source_restored", timeout=10)
        collector.wait_for("status", 2, where=lambda p: p["state"] == "online")
        source.trigger("AFTER-1")
        assert collector.wait_for("result")[0]["cell_id"] == "AFTER-1"
    assert lost["severity"] == "critical" and "camera removed" in lost["message"]
    assert source.opens == 2
    assert "reopening the source in 0.3 s" in caplog.text  # the configured back-off


def test_results_made_while_the_broker_is_down_arrive_in_order_when_it_returns(
    tmp_path: Path,
    broker,
    collector,
    line_bundle,
) -> None:
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, broker.port)
    stored = threading.Semaphore(0)
    daemon = Daemon(cfg, source=source, on_result=lambda *_: stored.release())
    with running(daemon):
        source.trigger("BEFORE")
        collector.wait_for("result")
        broker.stop()
        cells = [f"DOWN-{i:02d}" for i in range(8)]
        for cell in cells:
            source.trigger(cell)
        for _ in range(1 + len(cells)):
            assert stored.acquire(timeout=30)
        assert daemon.store.backlog() == len(cells), "stored, waiting for the broker"
        broker.start()
        down = collector.wait_for(
            "result", len(cells), timeout=60, where=lambda r: r["cell_id"].startswith("DOWN")
        )
        assert daemon.outbox.flush(30)
    # QoS 1 is at least once: a redelivered duplicate may follow, the first arrivals keep order
    first_seen = list(dict.fromkeys(r["cell_id"] for r in down))
    assert first_seen == cells


def test_stopping_finishes_the_frames_in_flight_and_publishes_them(
    tmp_path: Path, broker, collector, line_bundle
) -> None:
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, broker.port)
    daemon = Daemon(cfg, source=source)
    daemon.start()
    assert daemon.link.wait_connected(10)
    cells = [f"LAST-{i}" for i in range(5)]
    for cell in cells:
        source.trigger(cell)
    daemon.stop()  # as SIGTERM does, with the frames still in the pipeline
    daemon.wait_stopped()
    assert [r["cell_id"] for r in collector.wait_for("result", len(cells))] == cells
    store = Store(cfg.data_dir)
    assert store.backlog() == 0, "flushed before the offline status"
    store.close()
    collector.wait_for("status", where=lambda p: p["state"] == "offline")


def test_a_hot_folder_file_stored_before_a_crash_is_filed_not_inspected_again(
    tmp_path: Path, broker, collector, line_bundle
) -> None:
    incoming = write_images(tmp_path / "incoming", [good_image(5)])  # no cell id in the name
    (name,) = [p.name for p in incoming.iterdir()]
    hot = {"kind": "hotfolder", "folder": str(incoming), "settle_s": 0.05}
    cfg = make_config(tmp_path, line_bundle, broker.port, hot)
    with running(Daemon(cfg)):
        first = collector.wait_for("result")[0]
        wait_until(incoming, lambda: (incoming / "done" / name).exists(), 10, "file filed")
    # a crash after storing the result and before filing it leaves the file where it was,
    # and its result not marked as filed away
    (incoming / "done" / name).replace(incoming / name)
    with sqlite3.connect(cfg.data_dir / "inspector.db") as db:
        db.execute("UPDATE source_files SET filed_at = NULL")
    db.close()
    with running(Daemon(cfg)) as again:
        wait_until(incoming, lambda: (incoming / "done" / name).exists(), 10, "file filed again")
    assert again.counts["pass"] + again.counts["fail"] + again.counts["error"] == 0
    assert len(collector.on("result")) == 1, "one result for the file, from the first run"
    store = Store(cfg.data_dir)
    digest = hashlib.sha256((incoming / "done" / name).read_bytes()).hexdigest()
    _, payload, filed = store.result_for_file(str(incoming / name), digest)
    assert payload["frame_id"] == first["frame_id"] and filed
    store.close()


def test_a_trigger_while_stopping_is_refused_with_an_alarm_not_dropped(
    tmp_path: Path, broker, collector, line_bundle
) -> None:
    cfg = make_config(tmp_path, line_bundle, broker.port)
    with running(Daemon(cfg, source=QueueSource())) as daemon:
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        daemon.stop()  # as SIGTERM does; the link stays up until the outbox is flushed
        publish(broker, TOPIC_ROOT + "trigger", {"cell_id": "LATE-1"})
        refused = collector.wait_for("alarm", where=lambda a: a["kind"] == "trigger_refused")
    assert refused[0]["cell_id"] == "LATE-1" and "stopping" in refused[0]["message"]
    assert collector.on("result") == [], "no frame was taken for it"
