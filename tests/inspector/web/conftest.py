"""A real Store (SQLite in a temporary data directory) with rejects recorded as the daemon does."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from inspector.store.db import Store
from inspector.vision.decision import decide
from models.recipe import Thresholds
from tests.cli_helpers import INSPECTOR
from tests.conftest import textured

HOSTILE_CELL = "<script>alert('x')</script>"
FRAME_SHAPE = (240, 320)  # height, width of the recorded frames


def blob_map(shape: tuple[int, int], centres: list[tuple[int, int]]) -> np.ndarray:
    """A float32 map at frame size with a bright square blob (0.9) at each (x, y) centre."""
    amap = np.full(shape, 0.05, np.float32)
    for x, y in centres:
        amap[y - 15 : y + 15, x - 15 : x + 15] = 0.9
    return amap


def record_reject(
    store: Store,
    frame_id: str,
    cell_id: str,
    product: str,
    station: str,
    age: timedelta,
    centres: list[tuple[int, int]],
) -> dict:
    """Record a fail result with its frame and map, as the daemon does; returns the result."""
    image = textured(*FRAME_SHAPE, seed=len(frame_id))
    amap = blob_map(FRAME_SHAPE, centres)
    decision = decide(amap, float(amap.max()), amap.shape, Thresholds(pixel=0.5, image=0.5))
    assert decision.verdict == "fail"
    ts = (datetime.now(UTC) - age).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    result = {
        "schema": 1,
        "frame_id": frame_id,
        "cell_id": cell_id,
        "ts": ts,
        "product": product,
        "station": station,
        "width": FRAME_SHAPE[1],
        "height": FRAME_SHAPE[0],
        "model_id": "tiny-test",
        **decision.to_dict(),
    }
    store.record(result, image, amap)
    return result


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    """Two rejects (one recent with two regions, one three days old with a hostile cell id) and
    one pass, in a real SQLite store."""
    s = Store(tmp_path / "data")
    record_reject(s, "f-1", "cell-001", "pouch cell", "S1", timedelta(minutes=10), [(60, 50)])
    record_reject(
        s, "f-2", HOSTILE_CELL, "ultrasound", "S2", timedelta(days=3), [(200, 60), (150, 190)]
    )
    s.record(
        {"frame_id": "f-3", "cell_id": "cell-pass", "verdict": "pass", "station": "S1"},
        None,
        None,
    )
    yield s
    s.close()


SERVE_TOKEN = "serve-token-51"
CONFIG = """\
station: {line: L1, station: S1}
data_dir: data
bundle: bundle
source: {kind: video, url: line.mp4}
web: {token_env: INSPECTOR_WEB_TEST_TOKEN}
"""


def write_config(folder: Path) -> Path:
    path = folder / "inspector.yaml"
    path.write_text(CONFIG)
    return path


@contextlib.contextmanager
def serving(config: Path, env: dict[str, str]) -> Iterator[str]:
    """``inspector serve --config CONFIG`` on a free port; yields its URL, stops it after."""
    proc = subprocess.Popen(
        [INSPECTOR, "serve", "--config", str(config), "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **env},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    url, seen = None, []
    try:
        while url is None:
            line = lines.get(timeout=60)
            seen.append(line)
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        yield url
    except queue.Empty:
        pytest.fail("inspector serve did not start:\n" + "".join(seen))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture()
def server(tmp_path: Path, store: Store) -> Iterator[str]:
    """``inspector serve`` on a free port over the test store's data directory; yields its URL."""
    (tmp_path / "bundle").mkdir()
    with serving(write_config(tmp_path), {"INSPECTOR_WEB_TEST_TOKEN": SERVE_TOKEN}) as url:
        yield url
