"""Camera faults against pylon's emulated camera, and a stalled pipeline against the watchdog.

The emulator fails buffers on request (``ForceFailedBufferCount``) but cannot unplug itself;
the nearest real thing done here is destroying the pylon device under the running grab loop
(``InstantCamera.DestroyDevice()`` from another thread, which is what pylon's device-removal
handling does after a removal): the grab then gets nothing but invalid results. The emulated
camera is back at once when the daemon enumerates again, so "returns" means its re-open.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYLON_CAMEMU", "2")  # read by pypylon when it is first imported

import socket  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from inspector.sources.base import Frame  # noqa: E402
from inspector.station.daemon import Daemon  # noqa: E402
from tests.broker import publish  # noqa: E402
from tests.inspector.daemon_helpers import (  # noqa: E402
    TOPIC_ROOT,
    QueueSource,
    good_image,
    make_config,
    running,
    write_images,
)
from tests.reliability.notify import next_ping  # noqa: E402


def trigger(broker, cell: str) -> None:
    publish(broker, TOPIC_ROOT + "trigger", {"cell_id": cell})


def test_failed_buffers_and_a_device_destroyed_mid_grab_are_alarmed_and_recovered(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    folder = write_images(tmp_path / "camera", [good_image(5)])
    source = {"kind": "pylon", "serial": "0815-0000", "emulation_images": str(folder)}
    cfg = make_config(tmp_path, line_bundle, broker.port, source)
    with running(Daemon(cfg)) as daemon:
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        camera = daemon.source.camera
        camera.ForceFailedBufferCount.Value = 2
        camera.ForceFailedBuffer.Execute()
        cells = ["FB-1", "FB-2", "FB-3"]
        for cell in cells:
            trigger(broker, cell)
        results = {r["cell_id"]: r for r in collector.wait_for("result", 3, timeout=30)}
        assert [results[c]["verdict"] for c in cells] == ["error", "error", "pass"]
        assert all("grab failed" in results[c]["error"] for c in cells[:2])
        errors = collector.wait_for("alarm", 2, where=lambda a: a["kind"] == "frame_error")
        assert {a["cell_id"] for a in errors} == {"FB-1", "FB-2"}

        camera.DestroyDevice()  # under the grab loop, which is waiting in RetrieveResult
        lost = collector.wait_for("alarm", where=lambda a: a["kind"] == "source_lost", timeout=10)
        collector.wait_for("status", where=lambda p: p["state"] == "degraded", timeout=10)
        collector.wait_for("alarm", where=lambda a: a["kind"] == "source_restored", timeout=15)
        collector.wait_for("status", 2, where=lambda p: p["state"] == "online", timeout=10)
        assert daemon.source.camera is not camera, "a new device object, enumerated afresh"
        trigger(broker, "AFTER-1")
        after = collector.wait_for("result", where=lambda r: r["cell_id"] == "AFTER-1")[0]
    assert lost[0]["severity"] == "critical" and "0815-0000" in lost[0]["message"]
    assert after["verdict"] == "pass"


def test_a_stalled_inference_stops_the_watchdog_pings_until_it_moves_again(
    tmp_path: Path, notify_socket: socket.socket, line_bundle: Path
) -> None:
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, None, health={"stall_s": 0.5})
    stored = threading.Semaphore(0)
    daemon = Daemon(cfg, source=source, on_result=lambda *_: stored.release())
    entered, release = threading.Event(), threading.Event()
    infer = daemon.predictor.backend.infer

    def stuck_infer(batch):
        entered.set()
        assert release.wait(60), "the test never released the backend"
        return infer(batch)

    with running(daemon):
        assert next_ping(notify_socket, 10), "pings while healthy"
        daemon.predictor.backend.infer = stuck_infer  # a backend hung inside one batch
        source.push(Frame("STUCK-1", good_image(3)))
        assert entered.wait(30)
        pings_after_stall = 0
        while next_ping(notify_socket, 1.0):  # those sent before stall_s passed drain first
            pings_after_stall += 1
            assert pings_after_stall < 20, "the watchdog kept pinging a stalled pipeline"
        assert not next_ping(notify_socket, 1.0), "no ping while stalled"
        release.set()
        assert stored.acquire(timeout=30), "the stuck frame finishes"
        assert next_ping(notify_socket, 5), "pings resume once the pipeline moves"
    assert daemon.counts["pass"] == 1
