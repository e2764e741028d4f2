"""``inspector capture``: set-up images through the station's configured source."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.cli_helpers import run_inspector


def station(tmp_path: Path, frames: int) -> Path:
    """A station config whose source is a video file of ``frames`` gray levels 10, 30, ..."""
    video = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 64))
    for i in range(frames):
        writer.write(np.full((64, 80, 3), 10 + 20 * i, np.uint8))
    writer.release()
    config = tmp_path / "station.yaml"
    config.write_text(
        "station: {line: L1, station: S1}\ndata_dir: data\nbundle: bundle\n"
        f"source: {{kind: video, url: {video}, grayscale: true}}\n"
    )
    return config


def test_capture_writes_the_frames_the_daemon_would_see(tmp_path: Path) -> None:
    out = tmp_path / "setup"
    proc = run_inspector(
        "capture", "--config", str(station(tmp_path, 6)), "--count", "4", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert f"captured 4 image(s) from the video source into {out}" in proc.stdout
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"capture-{i:04d}.png" for i in range(1, 5)]
    levels = [int(np.median(cv2.imread(str(f), cv2.IMREAD_UNCHANGED))) for f in files]
    assert [abs(level - (10 + 20 * i)) <= 3 for i, level in enumerate(levels)] == [True] * 4
    assert cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED).shape == (64, 80)  # as configured


def test_a_source_that_runs_dry_says_how_many_were_saved(tmp_path: Path) -> None:
    out = tmp_path / "setup"
    proc = run_inspector(
        "capture", "--config", str(station(tmp_path, 2)), "--count", "5", "--out", str(out),
        "--timeout-s", "20",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "2 image(s) saved in" in proc.stderr and len(list(out.glob("*.png"))) == 2
