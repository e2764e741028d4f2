"""Frame sources: Basler cameras (pypylon), scanner hot folders, video streams.

Every source yields ``Frame`` objects; the daemon neither knows nor cares which kind it has.
``SOURCE_KINDS`` is the one list of kinds: a row names a kind's config class (the ``source``
section's union derives from the rows) and its source class, which ``create_source`` builds.
A new kind is one module (its config, a ``SourceSection``, and its ``Source``) and one row.
pypylon is imported only when a camera is opened.

Example:
    >>> src = create_source(VideoSourceConfig(url="line.mp4"))
    >>> src.name
    'video'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inspector.sources import hotfolder, pylon, video
from inspector.sources.base import Frame, Source, SourceError, SourceSection, new_cell_id
from inspector.sources.hotfolder import HotFolderSourceConfig
from inspector.sources.pylon import PylonSourceConfig
from inspector.sources.video import VideoSourceConfig


@dataclass(frozen=True)
class SourceKind:
    """One kind of source: its ``source`` section, and what builds it (not yet opened)."""

    config: type[SourceSection]
    create: Callable[[Any], Source]


SOURCE_KINDS: dict[str, SourceKind] = {
    pylon.KIND: SourceKind(pylon.PylonSourceConfig, pylon.PylonSource),
    hotfolder.KIND: SourceKind(hotfolder.HotFolderSourceConfig, hotfolder.HotFolderSource),
    video.KIND: SourceKind(video.VideoSourceConfig, video.VideoSource),
}


def create_source(cfg: SourceSection) -> Source:
    """The source ``cfg`` describes, not yet opened (the daemon calls ``open()``).

    Raises:
        TypeError: ``cfg`` is not the config of a registered kind.
    """
    kind = SOURCE_KINDS.get(cfg.kind)
    if kind is None or not isinstance(cfg, kind.config):
        raise TypeError(f"not a source config: {type(cfg).__name__}")
    return kind.create(cfg)


__all__ = [
    "SOURCE_KINDS",
    "Frame",
    "HotFolderSourceConfig",
    "PylonSourceConfig",
    "Source",
    "SourceError",
    "SourceKind",
    "SourceSection",
    "VideoSourceConfig",
    "create_source",
    "new_cell_id",
]
