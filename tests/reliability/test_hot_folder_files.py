"""What scanners and operators do to a hot folder while the daemon runs, with a real Mosquitto
and real files: every image file that lands in the folder gets a result for its own content,
and nothing in the folder (a pipe, a huge file, a replaced folder) makes the station go quiet.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.sources.base import SourceError
from inspector.sources.hotfolder import HotFolderSource
from inspector.station.daemon import Daemon
from tests.inspector.daemon_helpers import QueueSource, bad_image, good_image, make_config, running
from tests.reliability.fs_wait import wait_until
from tests.reliability.notify import next_ping

PATTERN = r"^(?P<cell_id>[A-Z0-9-]+)\."


def hot_config(tmp_path: Path, bundle: Path, port: int, sections: dict | None = None, **source):
    incoming = tmp_path / "incoming"
    incoming.mkdir(exist_ok=True)
    hot = {
        "kind": "hotfolder",
        "folder": str(incoming),
        "cell_id_pattern": PATTERN,
        "settle_s": 0.05,
        "corrupt_after_s": 0.5,
    }
    return make_config(tmp_path, bundle, port, hot | source, **(sections or {})), incoming


def drop(folder: Path, name: str, image: np.ndarray) -> bytes:
    """Write ``name`` as a scanner does (temporary name, then renamed); returns its bytes."""
    ok, png = cv2.imencode(".png", image)
    assert ok
    staging = folder.parent / "staging.tmp"
    staging.write_bytes(png.tobytes())
    os.replace(staging, folder / name)
    return png.tobytes()


def results_for(collector, cell: str) -> list[dict]:
    return [r for r in collector.on("result") if r["cell_id"] == cell]


@pytest.mark.slow
def test_a_file_rescanned_under_the_same_name_while_inspected_is_inspected_again(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    cfg, incoming = hot_config(tmp_path, line_bundle, broker.port)
    rescanned: list[bytes] = []

    def rescan_once(row_id: int, payload: dict, frame) -> None:
        # called after the result is stored and before the file is filed away: the scanner
        # writes the cell again under the same name (an operator's `mv new.png OV060.png`)
        if payload["cell_id"] == "OV060" and not rescanned:
            rescanned.append(drop(incoming, "OV060.png", bad_image(8)))

    with running(Daemon(cfg, on_result=rescan_once)):
        drop(incoming, "OV060.png", good_image(8))
        first, second = collector.wait_for(
            "result", 2, where=lambda r: r["cell_id"] == "OV060", timeout=60
        )
        wait_until(incoming, lambda: not (incoming / "OV060.png").exists(), 10, "filed away")
    assert (first["verdict"], second["verdict"]) == ("pass", "fail"), "each content judged"
    assert first["source"]["sha256"] != second["source"]["sha256"]
    assert [p.name for p in (incoming / "done").iterdir()] == ["OV060.png"]
    assert (incoming / "done" / "OV060.png").read_bytes() == rescanned[0]


@pytest.mark.slow
def test_a_name_whose_filing_failed_is_not_blocked_and_255_byte_names_are_filed_twice(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    cfg, incoming = hot_config(tmp_path, line_bundle, broker.port, cell_id_pattern=None)
    long_name = "L" * 251 + ".png"  # 255 bytes: "...-1.png" would be too long
    with running(Daemon(cfg)):
        for n, seed in enumerate((1, 2, 3), start=1):
            drop(incoming, long_name, good_image(seed))
            collector.wait_for("result", n, timeout=60)
            wait_until(incoming, lambda: not (incoming / long_name).exists(), 10, "filed")
        assert len(list((incoming / "done").iterdir())) == 3

        # done/ replaced by a file: the move fails, the file stays and is not taken again...
        shutil.rmtree(incoming / "done")
        (incoming / "done").write_text("not a folder")
        drop(incoming, "STUCK.png", good_image(4))
        collector.wait_for("result", 4)
        # ...but the same name with new content is inspected
        drop(incoming, "STUCK.png", bad_image(4))
        stuck = collector.wait_for("result", 5)[3:]
    assert [r["verdict"] for r in stuck] == ["pass", "fail"]
    assert [r["source"]["file"] for r in stuck] == ["STUCK.png", "STUCK.png"]
    assert len(collector.on("result")) == 5


@pytest.mark.slow
def test_a_file_queued_again_from_done_is_inspected_again_and_the_log_says_why(
    tmp_path: Path, broker, collector, line_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, incoming = hot_config(tmp_path, line_bundle, broker.port)
    caplog.set_level("INFO", logger="inspector")
    done = incoming / "done"
    with running(Daemon(cfg)):
        drop(incoming, "RQ-1.png", good_image(2))
        drop(incoming, "RQ-2.png", good_image(3))
        collector.wait_for("result", 2)
        wait_until(incoming, lambda: len(list(done.iterdir())) == 2, 10, "both filed")
        (done / "RQ-1.png").rename(incoming / "RQ-1.png")  # mv done/RQ-1.png .
        shutil.copy2(done / "RQ-2.png", incoming / "RQ-2.png")  # cp -p done/RQ-2.png .
        requeued = collector.wait_for("result", 4, timeout=60)[2:]
    assert sorted(r["cell_id"] for r in requeued) == ["RQ-1", "RQ-2"]
    assert len({r["frame_id"] for r in collector.on("result")}) == 4
    assert caplog.text.count("filed away before: queued again, inspected anew") == 2


@pytest.mark.slow
def test_pipes_and_device_nodes_are_skipped_with_a_log_line_and_the_folder_goes_on(
    tmp_path: Path, broker, collector, line_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, incoming = hot_config(tmp_path, line_bundle, broker.port)
    caplog.set_level("INFO", logger="inspector")
    fifo = incoming / "A-FIFO.png"
    os.mkfifo(fifo)
    specials = [fifo]
    try:
        os.mknod(incoming / "A-DEV.png", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null
        specials.append(incoming / "A-DEV.png")
    except PermissionError:  # no CAP_MKNOD here: the pipe stands for both
        pass
    try:
        with running(Daemon(cfg)) as daemon:
            drop(incoming, "B-1.png", good_image(4))
            result = collector.wait_for("result", where=lambda r: r["cell_id"] == "B-1")[0]
            assert daemon._threads_alive()
    finally:  # the unfixed daemon hangs in open() on the pipe: a writer releases it
        with open(os.open(fifo, os.O_RDWR | os.O_NONBLOCK), "wb"):
            pass
    assert result["verdict"] == "pass"
    assert [r["cell_id"] for r in collector.on("result")] == ["B-1"]
    for special in specials:
        assert special.exists(), "left where it is"
        assert f"{special.name!r} in the hot folder is not a regular file: skipped" in caplog.text


@pytest.mark.slow
def test_a_64_gb_sparse_file_gets_an_error_result_and_the_next_file_is_inspected(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    cfg, incoming = hot_config(tmp_path, line_bundle, broker.port, max_file_mb=50)
    with running(Daemon(cfg)):
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        with (incoming.parent / "BIG-1.png").open("wb") as f:  # truncate -s 64G
            f.truncate(64 * 2**30)
        os.replace(incoming.parent / "BIG-1.png", incoming / "BIG-1.png")
        big = collector.wait_for("result", where=lambda r: r["cell_id"] == "BIG-1")[0]
        drop(incoming, "AFTER-1.png", good_image(4))
        after = collector.wait_for("result", where=lambda r: r["cell_id"] == "AFTER-1")[0]
        wait_until(incoming, lambda: (incoming / "failed" / "BIG-1.png").exists(), 10, "failed/")
    assert big["verdict"] == "error"
    assert big["error"] == (
        "BIG-1.png: 68,719 MB is more than source.max_file_mb (50 MB); not read"
    ), big["error"]
    assert after["verdict"] == "pass"
    assert not [a for a in collector.on("alarm") if a["kind"] == "source_lost"]


@pytest.mark.slow
def test_a_replaced_hot_folder_is_watched_again_with_an_alarm(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    cfg, incoming = hot_config(tmp_path, line_bundle, broker.port)
    with running(Daemon(cfg)):
        drop(incoming, "OLD-1.png", good_image(1))
        collector.wait_for("result", where=lambda r: r["cell_id"] == "OLD-1")
        incoming.rename(tmp_path / "incoming.old")  # mv hot hot.old && mkdir hot
        incoming.mkdir()
        lost = collector.wait_for("alarm", where=lambda a: a["kind"] == "source_lost")[0]
        collector.wait_for("alarm", where=lambda a: a["kind"] == "source_restored", timeout=15)
        drop(incoming, "NEW-1.png", good_image(2))
        new = collector.wait_for("result", where=lambda r: r["cell_id"] == "NEW-1", timeout=30)
    assert "was replaced" in lost["message"] and lost["severity"] == "critical"
    assert new[0]["verdict"] == "pass"
    assert (incoming / "done" / "NEW-1.png").exists()


@pytest.mark.slow
def test_a_grab_thread_stuck_in_one_file_stops_the_watchdog_and_degrades_the_status(
    tmp_path: Path, broker, collector, notify_socket: socket.socket, line_bundle: Path
) -> None:
    cfg, incoming = hot_config(tmp_path, line_bundle, broker.port, {"health": {"stall_s": 0.5}})
    entered, release = threading.Event(), threading.Event()

    def hang_on(state: str, path: Path) -> None:
        # runs on the grab thread while it looks at the file: a read from a share that hung
        if path.name == "HANG-1.png" and not release.is_set():
            entered.set()
            assert release.wait(60), "the test never released the grab thread"

    source = HotFolderSource(cfg.source, on_event=hang_on)
    with running(Daemon(cfg, source=source)):
        assert next_ping(notify_socket, 10), "pings while healthy"
        drop(incoming, "HANG-1.png", good_image(1))
        assert entered.wait(30)
        pings_after_stall = 0
        while next_ping(notify_socket, 1.0):  # those sent before stall_s passed drain first
            pings_after_stall += 1
            assert pings_after_stall < 20, "the watchdog kept pinging a stuck grab thread"
        alarm = collector.wait_for("alarm", where=lambda a: a["kind"] == "pipeline_stalled")[0]
        collector.wait_for("status", where=lambda p: p["state"] == "degraded")
        release.set()
        collector.wait_for("result", where=lambda r: r["cell_id"] == "HANG-1", timeout=30)
        assert next_ping(notify_socket, 5), "pings resume once the grab thread moves"
        collector.wait_for("status", 2, where=lambda p: p["state"] == "online", timeout=10)
    assert "grab" in alarm["message"] and alarm["severity"] == "critical"


class FailsEveryTime(QueueSource):
    """Opens fine, then fails at once each time: a file that breaks the source whenever it
    is read again. Notes the monotonic time of each open."""

    def __init__(self) -> None:
        super().__init__()
        self.opened_at: list[float] = []
        self.cond = threading.Condition()

    def open(self) -> None:
        with self.cond:
            self.opened_at.append(time.monotonic())
            self.cond.notify_all()

    def frames(self):
        raise SourceError("A-1.png breaks the source every time")
        yield  # a generator, as every source's frames() is


def test_a_source_that_fails_every_time_is_reopened_with_a_growing_back_off(
    tmp_path: Path, line_bundle: Path
) -> None:
    source = FailsEveryTime()
    video = {"kind": "video", "url": "unused", "reconnect_backoff_s": 0.05}
    cfg = make_config(tmp_path, line_bundle, None, video)
    with running(Daemon(cfg, source=source)), source.cond:
        assert source.cond.wait_for(lambda: len(source.opened_at) >= 5, timeout=30)
    gaps = np.diff(source.opened_at[:5])
    assert gaps[-1] >= 0.3, f"back-off reset at each reopen: gaps {gaps.round(3)}"
    assert all(b >= a for a, b in zip(gaps, gaps[1:], strict=False)), gaps.round(3)
