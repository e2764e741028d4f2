"""The hot folder: files are taken only when completely written, corrupt ones end in failed/."""

from __future__ import annotations

import hashlib
import queue
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.sources import HotFolderSourceConfig
from inspector.sources.hotfolder import CORRUPT, DONE, FAILED, INCOMPLETE, HotFolderSource
from tests.conftest import textured
from tests.inspector.sources.reader import TIMEOUT, Reader


class Running(Reader):
    """A hot-folder source read in the background; its file events go into ``events``."""

    def __init__(self, cfg: HotFolderSourceConfig, source: HotFolderSource | None = None) -> None:
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        if source is None:
            source = HotFolderSource(cfg, on_event=lambda s, p: self.events.put((s, p.name)))
        else:
            source.on_event = lambda s, p: self.events.put((s, p.name))
        super().__init__(source)

    def wait_event(self, state: str, name: str) -> None:
        """Block until the source reports ``state`` for the file ``name``."""
        while True:
            if self.events.get(timeout=TIMEOUT) == (state, name):
                return


@pytest.fixture
def running(tmp_path: Path) -> Iterator:
    made: list[Running] = []

    def start(**overrides) -> Running:
        cfg = HotFolderSourceConfig(
            folder=tmp_path / "scans",
            cell_id_pattern=r"^(?P<cell_id>C\d+)_(?P<product>\w+)\.",
            **{"settle_s": 0.05, "corrupt_after_s": 5.0, **overrides},
        )
        cfg.folder.mkdir(exist_ok=True)
        made.append(Running(cfg))
        return made[-1]

    yield start
    for run in made:
        run.close()


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def test_a_file_written_slowly_is_taken_only_when_complete(running, tmp_path: Path) -> None:
    run = running()
    image = textured(240, 320, seed=3)
    data = png_bytes(image)
    pieces = [data[: len(data) // 3], data[len(data) // 3 : 2 * len(data) // 3]]
    path = tmp_path / "scans" / "C0042_pouch.png"
    with open(path, "wb") as out:
        for piece in pieces:
            out.write(piece)
            out.flush()
            run.wait_event(INCOMPLETE, path.name)  # the source looked at it and left it
            assert run.frames.empty(), "a half-written file was taken"
        out.write(data[2 * len(data) // 3 :])
    frame = run.frames.get(timeout=TIMEOUT)
    assert frame.error is None and frame.cell_id == "C0042" and frame.product == "pouch"
    np.testing.assert_array_equal(frame.image, image)
    run.source.ack(frame, ok=True)
    run.wait_event(DONE, path.name)
    assert (tmp_path / "scans" / "done" / path.name).read_bytes() == data
    assert not path.exists()
    assert run.error is None


def test_a_corrupt_file_goes_to_failed_and_the_source_keeps_going(running, tmp_path) -> None:
    run = running(corrupt_after_s=0.3)
    bad = tmp_path / "scans" / "C0001_pouch.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    frame = run.frames.get(timeout=TIMEOUT)
    assert frame.image is None and frame.cell_id == "C0001"
    assert "C0001_pouch.png" in frame.error and "not a readable image" in frame.error
    # its content is known, so a crash before it is filed away does not repeat the error
    assert frame.meta["sha256"] == hashlib.sha256(bad.read_bytes()).hexdigest()
    run.source.ack(frame, ok=False)
    run.wait_event(FAILED, bad.name)
    assert (tmp_path / "scans" / "failed" / bad.name).exists() and not bad.exists()

    good = textured(64, 80, seed=5)
    tmp = tmp_path / "scans" / "C0002_pouch.png.part"  # written aside, renamed into place
    tmp.write_bytes(png_bytes(good))
    tmp.rename(tmp_path / "scans" / "C0002_pouch.png")
    frame = run.frames.get(timeout=TIMEOUT)
    assert frame.cell_id == "C0002" and frame.error is None
    np.testing.assert_array_equal(frame.image, good)
    assert run.error is None


def test_files_present_at_start_are_taken_in_name_order_with_fallback_ids(
    running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    names = ["C0003_pouch.png", "C0004_pouch.png", "scan_without_id.png"]
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), textured(32, 48, seed=i))
    (folder / "notes.txt").write_text("not an image")
    run = running()
    frames = [run.frames.get(timeout=TIMEOUT) for _ in names]
    assert [f.meta["file"] for f in frames] == names
    assert frames[0].cell_id == "C0003" and frames[1].cell_id == "C0004"
    assert frames[2].cell_id.startswith("cell-") and frames[2].product is None
    # a name the pattern does not match is said so, in the frame and in the log
    assert frames[2].meta.get("cell_id_generated") is True
    assert "cell_id_generated" not in frames[0].meta
    assert "scan_without_id.png does not match source.cell_id_pattern" in caplog.text
    for frame in frames:
        run.source.ack(frame, ok=True)
    for name in names:
        run.wait_event(DONE, name)
    assert sorted(p.name for p in (folder / "done").iterdir()) == names
    assert (folder / "notes.txt").exists()


def test_a_file_without_a_stored_result_is_taken_again_after_a_restart(running, tmp_path) -> None:
    run = running()
    cv2.imwrite(str(tmp_path / "scans" / "C0009_pouch.png"), textured(32, 48))
    first = run.frames.get(timeout=TIMEOUT)
    run.close()  # the daemon stopped before acking: the file must still be there
    assert (tmp_path / "scans" / "C0009_pouch.png").exists()
    again = running()
    second = again.frames.get(timeout=TIMEOUT)
    assert second.cell_id == first.cell_id == "C0009"


def test_missing_folder_is_a_source_error(tmp_path: Path) -> None:
    from inspector.sources import SourceError

    source = HotFolderSource(HotFolderSourceConfig(folder=tmp_path / "nope"))
    with pytest.raises(SourceError, match="does not exist"):
        source.open()


def test_corrupt_event_is_reported(running, tmp_path: Path) -> None:
    run = running(corrupt_after_s=0.2)
    (tmp_path / "scans" / "C0005_pouch.png").write_bytes(b"")
    run.wait_event(CORRUPT, "C0005_pouch.png")
    assert run.frames.get(timeout=TIMEOUT).error.endswith("empty file")


def test_a_reopen_does_not_hand_out_a_file_whose_result_is_pending(running, tmp_path) -> None:
    run = running()
    folder = tmp_path / "scans"
    cv2.imwrite(str(folder / "C0010_pouch.png"), textured(32, 48, seed=1))
    (first,) = run.take()
    run.close()  # the daemon reopens a source after a fault, with this frame still in its queue
    again = Running(run.source.cfg, source=run.source)
    try:
        cv2.imwrite(str(folder / "C0011_pouch.png"), textured(32, 48, seed=2))
        (second,) = again.take()
        assert second.cell_id == "C0011"
        again.source.ack(first, ok=True)
        again.wait_event(DONE, "C0010_pouch.png")
        assert (folder / "done" / "C0010_pouch.png").exists()
    finally:
        again.close()


def test_a_file_deleted_before_it_settles_is_forgotten(running, tmp_path: Path) -> None:
    run = running()
    folder = tmp_path / "scans"
    (folder / "C0020_pouch.png").write_bytes(b"\x89PNG partial")
    run.wait_event(INCOMPLETE, "C0020_pouch.png")
    (folder / "C0020_pouch.png").unlink()  # the scanner aborted and removed it
    cv2.imwrite(str(folder / "C0021_pouch.png"), textured(32, 48))
    (frame,) = run.take()
    assert frame.cell_id == "C0021" and run.error is None


def test_polling_for_network_shares_takes_files_too(running, tmp_path: Path) -> None:
    run = running(polling=True)
    image = textured(32, 48, seed=7)
    cv2.imwrite(str(tmp_path / "scans" / "C0030_pouch.png"), image)
    (frame,) = run.take()
    assert frame.cell_id == "C0030"
    np.testing.assert_array_equal(frame.image, image)
