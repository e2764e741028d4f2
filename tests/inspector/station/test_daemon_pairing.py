"""Hardware trigger with cell ids over MQTT: a late id, a missing one and an extra one are each
flagged and alarmed, and no frame is ever given another cell's id (real Mosquitto, real SQLite).

The source stands in for a camera on a hardware trigger: frames come when the test pushes them,
with generated ids, and it takes no software trigger. Each frame carries its number in its
source facts (``source.seq`` of the result), so a mismatch would show.
"""

from __future__ import annotations

from pathlib import Path

from inspector.sources.base import Frame, new_cell_id
from inspector.station.daemon import Daemon
from tests.broker import publish
from tests.inspector.daemon_helpers import TOPIC_ROOT, QueueSource, good_image, make_config, running

WINDOW_S = 1.0


class HardwareTriggered(QueueSource):
    """Frames arrive on their own (a light barrier triggers the camera)."""

    name = "pylon"

    @property
    def triggerable(self) -> bool:
        return False

    def frame(self, seq: int) -> None:
        self.push(Frame(new_cell_id("cell"), good_image(seq), meta={"seq": seq}))


def test_late_missing_and_extra_ids_are_flagged_and_no_frame_gets_another_cells_id(
    tmp_path: Path, broker, collector, line_bundle
) -> None:
    source = HardwareTriggered()
    cfg = make_config(
        tmp_path,
        line_bundle,
        broker.port,
        {"kind": "pylon", "trigger": "hardware"},
        pairing={"mode": "mqtt", "window_s": WINDOW_S},
    )

    def cell_id(cell: str, product: str | None = None) -> None:
        body = {"cell_id": cell} | ({"product": product} if product else {})
        publish(broker, TOPIC_ROOT + "trigger", body)

    def result_of(where) -> dict:
        return collector.wait_for("result", where=where)[0]

    with running(Daemon(cfg, source=source)):
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        # 1: id, then its frame
        cell_id("C-1", "pouch")
        source.frame(1)
        first = result_of(lambda r: r["cell_id"] == "C-1")
        # 2: the frame, and its id only after the frame's window has closed (late)
        source.frame(2)
        no_id = result_of(lambda r: r["source"].get("seq") == 2)
        cell_id("C-2")
        late = result_of(lambda r: r["cell_id"] == "C-2")
        # 3: a frame whose id never comes (missing)
        source.frame(3)
        missing = result_of(lambda r: r["source"].get("seq") == 3)
        # an id with no cell behind it (extra)
        cell_id("C-X")
        extra = result_of(lambda r: r["cell_id"] == "C-X")
        # 4: the frame first, its id right after: paired again
        source.frame(4)
        cell_id("C-4")
        last = result_of(lambda r: r["cell_id"] == "C-4")
        alarms = collector.wait_for("alarm", 4, where=lambda a: a["kind"] != "source_lost")

    for r, seq in ((first, 1), (last, 4)):  # clean pairs keep their own frame
        assert r["verdict"] == "pass" and r["source"]["seq"] == seq
        assert r["source"]["pairing"] == "paired"
        assert abs(r["source"]["pairing_offset_ms"]) < WINDOW_S * 1e3
    assert first["product"] == "pouch"
    for r in (no_id, missing):  # inspected, under a generated id, flagged
        assert r["verdict"] == "pass" and r["cell_id"].startswith("cell-")
        assert r["source"]["pairing"] == "no_cell_id" and r["source"]["cell_id_generated"]
    for r in (late, extra):  # the cell gets a result, without a frame
        assert r["verdict"] == "error" and r["source"]["pairing"] == "no_frame"
        assert "no frame within pairing.window_s" in r["error"]
        assert "seq" not in r["source"]
    kinds = sorted((a["kind"], a["cell_id"]) for a in alarms)
    assert kinds == sorted(
        [
            ("cell_id_missing", no_id["cell_id"]),
            ("frame_missing", "C-2"),
            ("cell_id_missing", missing["cell_id"]),
            ("frame_missing", "C-X"),
        ]
    )
    results = collector.on("result")
    assert len(results) == 6, "one result per frame and per lone id, nothing twice"
    seqs = [r["source"].get("seq") for r in results if "seq" in r["source"]]
    assert sorted(seqs) == [1, 2, 3, 4]
