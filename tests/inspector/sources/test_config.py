"""The ``source`` config section: the kind picks the model, bad keys and values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from inspector.config.source import SourceConfig
from inspector.sources import (
    Frame,
    HotFolderSourceConfig,
    PylonSourceConfig,
    VideoSourceConfig,
    create_source,
)

ADAPTER = TypeAdapter(SourceConfig)


def test_kind_picks_the_model_with_its_defaults() -> None:
    cam = ADAPTER.validate_python({"kind": "pylon", "serial": "40012345"})
    folder = ADAPTER.validate_python({"kind": "hotfolder", "folder": "/scans"})
    video = ADAPTER.validate_python({"kind": "video", "url": "rtsp://scanner/1"})
    assert isinstance(cam, PylonSourceConfig) and cam.trigger == "software"
    assert isinstance(folder, HotFolderSourceConfig)
    assert folder.done_path == Path("/scans/done") and folder.failed_path == Path("/scans/failed")
    assert isinstance(video, VideoSourceConfig) and video.every_nth == 1


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"kind": "pylon", "serail": "1"}, "serail"),
        ({"kind": "pylon", "pixel_format": "Mono7"}, "pixel_format"),
        ({"kind": "pylon", "trigger": "sometimes"}, "trigger"),
        ({"kind": "hotfolder", "folder": "/s", "cell_id_pattern": "(?P<id>.*)"}, "cell_id"),
        ({"kind": "hotfolder", "folder": "/s", "cell_id_pattern": "(unclosed"}, "regular"),
        ({"kind": "video", "url": "a.mp4", "every_nth": 0}, "every_nth"),
        ({"kind": "laser"}, "kind"),
    ],
)
def test_bad_source_config_names_the_key(data: dict, where: str) -> None:
    with pytest.raises(ValidationError) as info:
        ADAPTER.validate_python(data)
    assert where in str(info.value)


def test_hotfolder_suffixes_are_normalised() -> None:
    cfg = HotFolderSourceConfig(kind="hotfolder", folder=Path("x"), suffixes=["PNG", ".Tif"])
    assert cfg.suffixes == [".png", ".tif"]


def test_create_source_builds_the_configured_kind(tmp_path: Path) -> None:
    cfg = ADAPTER.validate_python({"kind": "hotfolder", "folder": str(tmp_path)})
    assert create_source(cfg).name == "hotfolder"


def test_every_kind_says_how_the_daemon_backs_off_and_whether_triggers_name_its_cells() -> None:
    cam = ADAPTER.validate_python(
        {"kind": "pylon", "reconnect_backoff_s": 2, "reconnect_backoff_max_s": 8}
    )
    video = ADAPTER.validate_python({"kind": "video", "url": "a.mp4", "reconnect_backoff_s": 0.3})
    folder = ADAPTER.validate_python({"kind": "hotfolder", "folder": "/scans"})
    assert cam.reconnect_backoff() == (2.0, 8.0)
    assert video.reconnect_backoff() == (0.3, 30.0)
    assert folder.reconnect_backoff() == (1.0, 30.0)
    assert cam.takes_ids_from_triggers
    hardware = ADAPTER.validate_python({"kind": "pylon", "trigger": "hardware"})
    assert not hardware.takes_ids_from_triggers
    assert not video.takes_ids_from_triggers and not folder.takes_ids_from_triggers


def test_a_source_that_keeps_nothing_per_frame_files_nothing(tmp_path: Path) -> None:
    source = create_source(VideoSourceConfig(url=str(tmp_path / "a.mp4")))
    assert source.ack(Frame("c1", None, error="x"), ok=False) is False
