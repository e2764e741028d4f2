"""Reject alarms as configured (off, every reject, a reject rate), real Mosquitto and SQLite."""

from __future__ import annotations

from pathlib import Path

from inspector.sources.base import Frame
from inspector.station.daemon import Daemon
from tests.inspector.daemon_helpers import (
    QueueSource,
    bad_image,
    good_image,
    make_config,
    running,
)


def test_with_reject_alarms_off_a_reject_is_a_fail_result_and_no_alarm(
    tmp_path: Path, broker, collector, line_bundle
) -> None:
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, broker.port, alarms={"reject": "off"})
    with running(Daemon(cfg, source=source)):
        source.push(Frame("BAD-1", bad_image(2)))
        source.push(Frame("LOST-1", None, error="grab timed out"))
        # the same thread alarms in frame order: a reject alarm would come before this one
        collector.wait_for("alarm", where=lambda a: a["kind"] == "frame_error")
        results = {r["cell_id"]: r for r in collector.wait_for("result", 2)}
    assert results["BAD-1"]["verdict"] == "fail"
    assert [a["kind"] for a in collector.on("alarm")] == ["frame_error"]


def test_a_reject_rate_alarm_is_raised_once_over_the_threshold_and_cleared_below(
    tmp_path: Path, broker, collector, line_bundle
) -> None:
    source = QueueSource()
    alarms = {"reject": "rate", "reject_rate": 0.5, "reject_window": 4}
    cfg = make_config(tmp_path, line_bundle, broker.port, alarms=alarms)
    cells = ["G1", "B2", "B3", "G4", "G5", "G6", "G7"]  # rate over 4: -, -, -, .5, .5, .25, 0
    with running(Daemon(cfg, source=source)):
        for cell in cells:
            image = bad_image(3) if cell.startswith("B") else good_image(3)
            source.push(Frame(cell, image))
        collector.wait_for("result", len(cells))
        collector.wait_for("alarm", where=lambda a: a["kind"] == "reject_rate_restored")
    alarms_seen = collector.on("alarm")
    assert [a["kind"] for a in alarms_seen] == ["reject_rate", "reject_rate_restored"]
    raised, cleared = alarms_seen
    assert raised["rate"] == 0.5 and raised["window"] == 4 and raised["severity"] == "warning"
    assert "50.0% of the last 4 cells rejected" in raised["message"]
    assert cleared["rate"] == 0.25 and cleared["severity"] == "info"
