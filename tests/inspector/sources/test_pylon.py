"""Basler cameras through pypylon, on pylon's camera emulation serving images from a folder."""

from __future__ import annotations

import os

os.environ.setdefault("PYLON_CAMEMU", "2")  # read by pypylon when it is first imported

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from inspector.sources import PylonSourceConfig, SourceError, create_source  # noqa: E402
from tests.conftest import textured  # noqa: E402
from tests.inspector.sources.reader import Reader  # noqa: E402

SERIAL = "0815-0000"  # the first emulated camera


@pytest.fixture
def images(tmp_path: Path) -> list[np.ndarray]:
    """Three distinct 8-bit images in tmp_path/images, served by the camera in name order."""
    folder = tmp_path / "images"
    folder.mkdir()
    made = []
    for i in range(3):
        img = textured(96, 128, seed=10 + i)
        cv2.imwrite(str(folder / f"img{i}.png"), img)
        made.append(img)
    return made


@pytest.fixture
def camera(tmp_path: Path) -> Iterator:
    readers: list[Reader] = []

    def start(**fields) -> Reader:
        cfg = PylonSourceConfig(
            kind="pylon", serial=SERIAL, emulation_images=tmp_path / "images", **fields
        )
        readers.append(Reader(create_source(cfg)))
        return readers[-1]

    yield start
    for reader in readers:
        reader.close()


def test_software_triggers_give_one_frame_per_cell_with_the_served_image(camera, images) -> None:
    cam = camera(pixel_format="Mono8", trigger="software")
    cells = [f"C{i:04d}" for i in range(5)]
    for cell in cells:
        cam.source.trigger(cell, product="pouch")
    frames = cam.take(len(cells))
    assert [f.cell_id for f in frames] == cells
    for i, frame in enumerate(frames):
        assert frame.error is None and frame.product == "pouch"
        assert frame.image.dtype == np.uint8 and frame.meta["bit_depth"] == 8
        np.testing.assert_array_equal(frame.image, images[i % len(images)])
    assert cam.frames.empty() and cam.error is None


def test_mono12_frames_are_16_bit_with_bit_depth_12(camera, images) -> None:
    cam = camera(pixel_format="Mono12")
    cam.source.trigger("C0100")
    (frame,) = cam.take()
    assert frame.cell_id == "C0100" and frame.image.dtype == np.uint16
    assert frame.meta["bit_depth"] == 12 and int(frame.image.max()) <= 4095
    # the emulator widens the 8-bit file to 12 bits by shifting it left
    np.testing.assert_array_equal(frame.image, images[0].astype(np.uint16) << 4)


def test_colour_frames_come_as_bgr(camera, tmp_path: Path) -> None:
    colour = np.dstack([textured(96, 128, seed=s) for s in (1, 2, 3)])
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "c.png"), colour)
    cam = camera(pixel_format="BGR8")
    cam.source.trigger("C0200")
    (frame,) = cam.take()
    np.testing.assert_array_equal(frame.image, colour)


def test_a_failed_buffer_is_an_error_frame_with_its_cell_id(camera, images) -> None:
    cam = camera()
    cam.source.camera.ForceFailedBufferCount.Value = 1
    cam.source.camera.ForceFailedBuffer.Execute()
    for cell in ("C0300", "C0301"):
        cam.source.trigger(cell)
    bad, good = cam.take(2)
    assert bad.cell_id == "C0300" and bad.image is None and "grab failed" in bad.error
    assert good.cell_id == "C0301" and good.error is None and good.image is not None


def test_an_image_that_never_comes_is_an_error_frame_and_the_next_cell_is_right(
    camera, images
) -> None:
    cam = camera(exposure_us=300_000, grab_timeout_ms=50)  # exposure outlasts the timeout
    cam.source.trigger("C0400")
    (late,) = cam.take()
    assert late.cell_id == "C0400" and late.image is None and "no image within 50 ms" in late.error
    cam.source.camera.ExposureTimeAbs.Value = 1000
    for cell in ("C0401", "C0402"):  # had the late image been kept, each would get the one before
        cam.source.trigger(cell)
        (frame,) = cam.take()
        assert frame.cell_id == cell and frame.error is None
        assert "untriggered" not in frame.meta


def test_free_run_frames_get_unique_sortable_ids(camera, images) -> None:
    cam = camera(trigger="free_run", frame_rate=100)
    frames = cam.take(6)
    ids = [f.cell_id for f in frames]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert all(f.error is None and f.image.shape == (96, 128) for f in frames)
    assert not cam.source.triggerable
    with pytest.raises(NotImplementedError):
        cam.source.trigger("C0500")


def test_hardware_trigger_waits_on_the_configured_line(camera, images) -> None:
    cam = camera(trigger="hardware", trigger_line="Line2")
    assert cam.source.camera.TriggerSource.Value == "Line2"
    assert cam.source.camera.TriggerMode.Value == "On"
    assert not cam.source.triggerable


def test_an_unknown_camera_is_a_source_error_naming_what_is_there(tmp_path: Path) -> None:
    source = create_source(PylonSourceConfig(kind="pylon", user_id="station-9"))
    with pytest.raises(SourceError, match=r"no camera with user id 'station-9'; found: 0815-0000"):
        source.open()


def test_reopen_after_close_re_enumerates_and_grabs_again(camera, images) -> None:
    cam = camera()
    cam.source.trigger("C0600")
    cam.take()
    cam.close()
    again = camera()
    again.source.trigger("C0601")
    (frame,) = again.take()
    assert frame.cell_id == "C0601" and frame.error is None


def test_a_trigger_outstanding_at_close_comes_out_as_an_error_frame(camera, images) -> None:
    cam = camera(exposure_us=300_000)
    cam.source.trigger("C0700")
    cam.close()  # before the 300 ms exposure is over
    (frame,) = cam.take()
    assert frame.cell_id == "C0700" and frame.image is None and "closed" in frame.error
