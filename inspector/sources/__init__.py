"""Frame sources: Basler cameras (pypylon), scanner hot folders, video streams.

Every source yields ``Frame`` objects; the daemon neither knows nor cares which kind it has.
``create_source`` builds the one the config names; pypylon and watchdog are imported only by
the source that needs them.

Example:
    >>> from pathlib import Path
    >>> src = create_source(VideoSourceConfig(kind="video", url="line.mp4"), Path("data"))
    >>> src.name
    'video'
"""

from __future__ import annotations

from pathlib import Path

from inspector.sources.base import Frame, Source, SourceError, new_cell_id
from inspector.sources.config import (
    HotFolderSourceConfig,
    PylonSourceConfig,
    SourceConfig,
    VideoSourceConfig,
)


def create_source(cfg: SourceConfig, data_dir: Path) -> Source:
    """The source ``cfg`` describes, not yet opened (the daemon calls ``open()``).

    ``data_dir`` is the daemon's data directory; relative hot-folder paths stay relative to
    the working directory, as the config gives them.
    """
    if isinstance(cfg, PylonSourceConfig):
        from inspector.sources.pylon import PylonSource

        return PylonSource(cfg)
    if isinstance(cfg, HotFolderSourceConfig):
        from inspector.sources.hotfolder import HotFolderSource

        return HotFolderSource(cfg)
    if isinstance(cfg, VideoSourceConfig):
        from inspector.sources.video import VideoSource

        return VideoSource(cfg)
    raise TypeError(f"not a source config: {type(cfg).__name__}")


__all__ = [
    "Frame",
    "HotFolderSourceConfig",
    "PylonSourceConfig",
    "Source",
    "SourceConfig",
    "SourceError",
    "VideoSourceConfig",
    "create_source",
    "new_cell_id",
]
