"""Frames no camera should send, through the running daemon (pushed as arrays, and as files in
the hot folder): each gets a clear ``error`` verdict naming what is wrong (a valid 16-bit or
4-channel file gets its true verdict), and the station goes on inspecting."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.sources.base import Frame
from inspector.station.daemon import Daemon
from tests.inspector.daemon_helpers import (
    QueueSource,
    bad_image,
    good_image,
    make_config,
    running,
)


def nan_filled() -> np.ndarray:
    frame = good_image().astype(np.float32) / 255
    frame[10:20, 10:20] = np.nan
    return frame


HOSTILE = {
    "EMPTY": (np.zeros((0, 0), np.uint8), "smaller than 8x8"),
    "EMPTY-COLOUR": (np.zeros((0, 640, 3), np.uint8), "smaller than 8x8"),
    "ONE-PIXEL": (np.zeros((1, 1), np.uint8), "frame of 1x1 px is smaller than"),
    "HUGE": (np.zeros((20_000, 20_000), np.uint8), "20000x20000 px exceeds 100,000,000 pixels"),
    "NAN": (nan_filled(), "NaN or infinite"),
    "INF": (np.full((64, 64), np.inf), "NaN or infinite"),
    "RGBA": (np.zeros((64, 64, 4), np.uint8), "1 or 3 channels, got 4"),
    "4D": (np.zeros((2, 64, 64, 3), np.uint8), "HxW or HxWxC"),
    "INT32": (np.zeros((64, 64), np.int32), "unsupported pixel type int32"),
    "BOOL": (np.zeros((64, 64), bool), "unsupported pixel type bool"),
    "NOT-AN-ARRAY": ([[1, 2], [3, 4]], "numpy array, got list"),
}


@pytest.mark.slow
def test_hostile_frames_get_clear_error_verdicts_and_the_line_goes_on(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, broker.port)
    sixteen_good = good_image(7).astype(np.uint16) * 257  # the same picture at 16 bits
    sixteen_bad = bad_image(7).astype(np.uint16) * 257
    with running(Daemon(cfg, source=source)) as daemon:
        for cell, (image, _) in HOSTILE.items():
            source.push(Frame(cell, image))
            source.push(Frame(f"AFTER-{cell}", good_image(7)))  # the line keeps inspecting
        source.push(Frame("MONO16-GOOD", sixteen_good))
        source.push(Frame("MONO16-BAD", sixteen_bad))
        n = 2 * len(HOSTILE) + 2
        results = {r["cell_id"]: r for r in collector.wait_for("result", n, timeout=120)}
        alarms = collector.wait_for(
            "alarm", len(HOSTILE), where=lambda a: a["kind"] == "frame_error"
        )
        assert daemon._threads_alive() and daemon.link.connected.is_set()
        assert daemon.counts["error"] == len(HOSTILE)
    for cell, (_, reason) in HOSTILE.items():
        r = results[cell]
        assert r["verdict"] == "error" and reason in r["error"], (cell, r["error"])
        assert r["image_score"] is None and r["regions"] == []
        assert results[f"AFTER-{cell}"]["verdict"] == "pass", cell
    assert {a["cell_id"] for a in alarms} == set(HOSTILE)
    assert results["MONO16-GOOD"]["verdict"] == "pass"
    assert results["MONO16-BAD"]["verdict"] == "fail" and results["MONO16-BAD"]["regions"]
    assert source.acks.count(("MONO16-BAD", True)) == 1


def put_atomically(folder: Path, name: str, image: np.ndarray) -> None:
    """Write ``name`` into the hot folder in one step, as a camera PC should."""
    staging = folder.parent / name
    assert cv2.imwrite(str(staging), image), name
    os.replace(staging, folder / name)


@pytest.mark.slow
def test_hostile_image_files_in_the_hot_folder_end_in_failed_with_the_reason(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    source = {
        "kind": "hotfolder",
        "folder": str(incoming),
        "settle_s": 0.05,
        "corrupt_after_s": 0.5,
        "cell_id_pattern": r"^(?P<cell_id>[A-Z0-9-]+)\.",
    }
    cfg = make_config(tmp_path, line_bundle, broker.port, source)
    files = {  # name -> (image, expected verdict, reason in the error)
        # a 400 MB frame in a ~0.4 MB PNG: decoded, refused by size, memory given back
        "HUGE.png": (np.zeros((20_000, 20_000), np.uint8), "error", "exceeds 100,000,000"),
        "ONE-PIXEL.png": (np.zeros((1, 1), np.uint8), "error", "smaller than 8x8"),
        "NAN.tiff": (nan_filled(), "error", "NaN or infinite"),
        "RGBA.png": (cv2.cvtColor(good_image(7), cv2.COLOR_GRAY2BGRA), "pass", None),
        "MONO16-GOOD.png": (good_image(7).astype(np.uint16) * 257, "pass", None),
        "MONO16-BAD.png": (bad_image(7).astype(np.uint16) * 257, "fail", None),
    }
    with running(Daemon(cfg)) as daemon:
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        for name, (image, _, _) in files.items():
            put_atomically(incoming, name, image)
        (incoming / "EMPTY.png").write_bytes(b"")
        (incoming / "TRUNCATED.png").write_bytes(cv2.imencode(".png", good_image())[1][:200])
        results = {r["cell_id"]: r for r in collector.wait_for("result", len(files) + 2, 60)}
        assert daemon._threads_alive()
    for name, (_, verdict, reason) in files.items():
        r = results[name.split(".")[0]]
        assert r["verdict"] == verdict, (name, r.get("error"))
        assert reason is None or reason in r["error"], (name, r["error"])
    assert results["EMPTY"]["error"] == "EMPTY.png: empty file"
    assert "not a readable image" in results["TRUNCATED"]["error"]
    failed = sorted(p.name for p in (incoming / "failed").iterdir())
    assert failed == ["EMPTY.png", "HUGE.png", "NAN.tiff", "ONE-PIXEL.png", "TRUNCATED.png"]
    assert len(list((incoming / "done").iterdir())) == 3 and not list(incoming.glob("*.*"))
