"""Feedback in the store, on the MQTT `feedback` topic, the kept passed frames and the export
(parsing: tests/inspector/comms/test_inbound.py; the sampler: tests/inspector/station/)."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.offline.feedback_dataset import export_dataset
from inspector.sources.base import Frame
from inspector.station.daemon import Daemon
from inspector.store.db import Store
from tests.broker import publish
from tests.conftest import textured
from tests.inspector.daemon_helpers import (
    TOPIC_ROOT,
    QueueSource,
    bad_image,
    good_image,
    make_config,
    running,
)


def reject(store: Store, frame_id: str, cell_id: str, product: str = "pouch cell") -> int:
    image = textured(60, 80, seed=len(frame_id))
    result = {"frame_id": frame_id, "cell_id": cell_id, "verdict": "fail", "product": product,
              "model_id": "tiny-x", "image_score": 0.7}
    return store.record(result, image, np.zeros((60, 80), np.float32))


@pytest.fixture()
def store(tmp_path: Path):
    s = Store(tmp_path / "data")
    yield s
    s.close()


def test_a_label_goes_to_the_newest_reject_of_a_cell(store: Store) -> None:
    reject(store, "f-1", "C-1")
    reject(store, "f-2", "C-1")  # the same cell inspected again
    stored = store.add_feedback("false_reject", "anna", "api", "glare", cell_id="C-1")
    assert stored["frame_id"] == "f-2"
    with pytest.raises(KeyError):
        store.add_feedback("confirmed", "anna", "api", cell_id="C-9")
    with pytest.raises(ValueError, match="label must be one of"):
        store.add_feedback("maybe", "anna", "api", frame_id="f-1")


def test_retention_keeps_labelled_rejects(store: Store) -> None:
    for i in range(2):
        row = reject(store, f"f-{i}", f"C-{i}")
        store.results.mark_published([row])
        store.finish_job(store.claim_job().id, "text", "template")
    store.explanations.mark_published([r["id"] for r in store.explanations.unpublished()])
    store.add_feedback("confirmed", "anna", "web", frame_id="f-0")
    assert store.apply_retention(max_age_s=-1, max_bytes=10**12) == 1
    assert store.reject("f-0") is not None and store.reject("f-1") is None


def test_export_writes_an_mvtec_dataset_per_product(store: Store, tmp_path: Path) -> None:
    reject(store, "f-1", "C-1")
    reject(store, "f-2", "C-2")
    reject(store, "f-3", "C-3", product="prismatic")
    reject(store, "f-4", "C-4")  # not labelled: not exported
    store.record({"frame_id": "p-1", "cell_id": "C-5", "verdict": "pass", "product": "pouch cell"},
                 textured(60, 80), None, keep_image=True)
    store.record({"frame_id": "p-2", "cell_id": "C-6", "verdict": "pass", "product": "pouch cell"},
                 textured(60, 80), None)  # not kept
    store.add_feedback("confirmed", "anna", "web", frame_id="f-1")  # changed mind below
    store.add_feedback("false_reject", "anna", "web", "new lot", frame_id="f-1")
    store.add_feedback("confirmed", "ben", "api", "scratch", frame_id="f-2")
    store.add_feedback("false_reject", "ben", "mqtt", frame_id="f-3")
    summary = export_dataset(store, tmp_path / "out")
    pouch = tmp_path / "out" / "pouch-cell"
    assert sorted(p.relative_to(pouch).as_posix() for p in pouch.rglob("*.png")) == [
        "test/confirmed/f-2.png", "test/good/p-1.png", "train/good/f-1.png"]
    assert (tmp_path / "out" / "prismatic" / "train" / "good" / "f-3.png").is_file()
    image = cv2.imread(str(pouch / "train/good/f-1.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(image, textured(60, 80, seed=3))  # the frame as the line saw it
    rows = list(csv.DictReader((pouch / "feedback.csv").open()))
    assert [(r["frame_id"], r["label"], r["user"], r["note"]) for r in rows] == [
        ("f-1", "false_reject", "anna", "new lot"), ("f-2", "confirmed", "ben", "scratch"),
        ("p-1", "pass", "", "")]
    assert summary.written["pouch-cell"] == {"false_reject": 1, "confirmed": 1, "pass": 1}
    only = export_dataset(store, tmp_path / "only", product="prismatic")
    assert list(only.written) == ["prismatic"]


def test_the_daemon_keeps_a_sample_of_passes_and_takes_feedback_over_mqtt(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    cfg = make_config(tmp_path, line_bundle, broker.port, feedback={"keep_passed_every": 2})
    source = QueueSource()
    done, stored = threading.Event(), []

    def on_result(_row, payload, _frame) -> None:
        stored.append(payload)
        if len(stored) == 5:
            done.set()

    with running(Daemon(cfg, source=source, on_result=on_result)) as daemon:
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        for i in range(4):
            source.push(Frame(f"OK-{i}", good_image(10 + i)))
        source.push(Frame("BAD-1", bad_image(7)))
        assert done.wait(60)
        daemon.store.flush_files()
        publish(broker, TOPIC_ROOT + "feedback",
                {"cell_id": "BAD-1", "label": "confirmed", "note": "dent", "user": "hmi-2"})
        publish(broker, TOPIC_ROOT + "feedback",
                {"cell_id": "OK-1", "label": "confirmed", "user": "hmi-2"})
        alarm = collector.wait_for("alarm", where=lambda a: a["kind"] == "bad_feedback")[0]
        assert "no reject with cell_id 'OK-1'" in alarm["message"]
        labelled = daemon.store.labelled()
    assert sorted((f["cell_id"], f["label"], f["user"]) for f in labelled) == [
        ("BAD-1", "confirmed", "hmi-2"), ("OK-1", "pass", ""), ("OK-3", "pass", "")]
    assert all(Path(f["image_path"]).is_file() for f in labelled)
    kept = [f for f in labelled if f["label"] == "pass"]
    assert all(Path(f["image_path"]).parent.parent.name == "passed" for f in kept)


def test_no_passed_frame_is_kept_below_the_disk_floor(tmp_path: Path, line_bundle: Path) -> None:
    cfg = make_config(
        tmp_path, line_bundle, None,
        feedback={"keep_passed_every": 1}, retention={"disk_low_alarm_gb": 1e9},
    )  # fmt: skip
    source, done, stored = QueueSource(), threading.Event(), []

    def on_result(_row, payload, _frame) -> None:
        stored.append(payload)
        if len(stored) == 2:
            done.set()

    with running(Daemon(cfg, source=source, on_result=on_result)) as daemon:
        for i in range(2):
            source.push(Frame(f"OK-{i}", good_image(20 + i)))
        assert done.wait(60)
        daemon.store.flush_files()
        assert daemon.store.labelled() == []  # the verdicts are stored, the frames are not
    assert [p["verdict"] for p in stored] == ["pass", "pass"]
    assert not (cfg.data_dir / "passed").exists()
