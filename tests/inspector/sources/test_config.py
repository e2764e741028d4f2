"""The ``source`` config section: the kind picks the model, bad keys and values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from inspector.config.source import SourceConfig
from inspector.sources import (
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
