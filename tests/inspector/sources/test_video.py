"""Video files and streams through OpenCV: every Nth frame, end of file, unreachable streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.sources import SourceError, VideoSourceConfig, create_source
from tests.inspector.sources.reader import TIMEOUT, Reader

N_FRAMES = 10


def level(i: int) -> int:
    """The gray level of frame ``i`` of the test video."""
    return 10 + 20 * i


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """A 10-frame MJPG video; frame i is a flat gray of ``level(i)``."""
    path = tmp_path / "scan.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 64))
    assert writer.isOpened()
    for i in range(N_FRAMES):
        writer.write(np.full((64, 80, 3), level(i), np.uint8))
    writer.release()
    return path


@pytest.fixture
def reading(tmp_path: Path) -> Iterator:
    readers: list[Reader] = []

    def start(**fields) -> Reader:
        readers.append(Reader(create_source(VideoSourceConfig(kind="video", **fields))))
        return readers[-1]

    yield start
    for reader in readers:
        reader.close()


def test_every_nth_frame_of_a_file_then_it_ends(reading, video: Path) -> None:
    run = reading(url=str(video), every_nth=3)
    assert run.source.ended.wait(TIMEOUT), "the file never ended"
    frames = [run.frames.get_nowait() for _ in range(run.frames.qsize())]
    assert [f.meta["frame_index"] for f in frames] == [0, 3, 6, 9]
    for f in frames:
        assert f.image.shape == (64, 80, 3)
        assert abs(float(f.image.mean()) - level(f.meta["frame_index"])) < 3
    ids = [f.cell_id for f in frames]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert run.error is None


def test_a_looped_file_keeps_delivering_in_gray(reading, video: Path) -> None:
    run = reading(url=str(video), loop=True, grayscale=True)
    frames = run.take(N_FRAMES + 5)
    assert [f.meta["frame_index"] for f in frames] == list(range(N_FRAMES + 5))
    assert all(f.image.ndim == 2 for f in frames)
    assert abs(float(frames[N_FRAMES].image.mean()) - level(0)) < 3  # back at the start
    assert not run.source.ended.is_set()


def test_a_missing_file_is_a_source_error(tmp_path: Path) -> None:
    source = create_source(VideoSourceConfig(kind="video", url=str(tmp_path / "no.avi")))
    with pytest.raises(SourceError, match="does not exist"):
        source.open()


def test_an_unreachable_stream_is_a_source_error_without_the_password(tmp_path: Path) -> None:
    cfg = VideoSourceConfig(
        kind="video", url="rtsp://op:secret@127.0.0.1:9/scan", open_timeout_ms=2000
    )
    source = create_source(cfg)
    with pytest.raises(SourceError) as info:
        source.open()
    assert "op:***@127.0.0.1" in str(info.value) and "secret" not in str(info.value)
    source.close()


def test_a_stream_that_stops_is_a_source_error(reading, video: Path) -> None:
    run = reading(url=video.resolve().as_uri())  # file:// goes through FFmpeg like a stream
    frames = run.take(N_FRAMES)
    assert [f.meta["frame_index"] for f in frames] == list(range(N_FRAMES))
    assert run.finished.wait(TIMEOUT)
    assert isinstance(run.error, SourceError) and "stopped" in str(run.error)
