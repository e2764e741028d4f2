"""The ``source`` section of the daemon's config: one pydantic model per kind of source.

The daemon's config holds exactly one of these under ``source:``; ``kind`` picks which.

Example:
    >>> from pydantic import TypeAdapter
    >>> TypeAdapter(SourceConfig).validate_python({"kind": "video", "url": "a.mp4"}).every_nth
    1
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.image_io import IMAGE_SUFFIXES

PixelFormat = Literal[
    "Mono8",
    "Mono10",
    "Mono12",
    "BGR8",
    "RGB8",
    "BayerRG8",
    "BayerBG8",
    "BayerGB8",
    "BayerGR8",
]


class PylonSourceConfig(BaseModel):
    """A Basler camera through pypylon.

    ``serial`` or ``user_id`` selects the camera (neither: the first one found). ``trigger``:
    ``software`` (the daemon triggers one frame per MQTT trigger message), ``hardware``
    (FrameStart on ``trigger_line``) or ``free_run``.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["pylon"] = "pylon"
    serial: str | None = None
    user_id: str | None = None
    pixel_format: PixelFormat = "Mono8"
    trigger: Literal["software", "hardware", "free_run"] = "software"
    trigger_line: str = "Line1"
    trigger_activation: Literal["RisingEdge", "FallingEdge"] = "RisingEdge"
    exposure_us: float | None = Field(default=None, gt=0)
    frame_rate: float | None = Field(
        default=None, gt=0, description="free run only: AcquisitionFrameRate in Hz"
    )
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    buffers: int = Field(default=16, ge=2, le=1024, description="MaxNumBuffer")
    grab_timeout_ms: int = Field(
        default=2000, gt=0, description="a triggered frame not here by then is an error frame"
    )
    reconnect_backoff_s: float = Field(default=1.0, gt=0)
    reconnect_backoff_max_s: float = Field(default=30.0, gt=0)
    emulation_images: Path | None = Field(
        default=None, description="emulated camera only: folder of images it serves"
    )
    cell_id_prefix: str = "cell"


class HotFolderSourceConfig(BaseModel):
    """A folder an ultrasound scanner writes image files into.

    ``cell_id_pattern`` is a regular expression searched in the file name with a named group
    ``cell_id`` (and optionally ``product``); a name it does not match gets a new unique id.
    Processed files go to ``done_dir`` / ``failed_dir`` (default ``done/`` and ``failed/``
    inside the watched folder, which is watched without its subfolders).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["hotfolder"] = "hotfolder"
    folder: Path
    cell_id_pattern: str | None = None
    suffixes: list[str] = Field(default_factory=lambda: sorted(IMAGE_SUFFIXES))
    done_dir: Path | None = None
    failed_dir: Path | None = None
    settle_s: float = Field(
        default=0.5, gt=0, description="a file is complete when unchanged this long"
    )
    corrupt_after_s: float = Field(
        default=10.0, gt=0, description="an unreadable file unchanged this long is corrupt"
    )
    polling: bool = Field(default=False, description="poll instead of OS events (network shares)")
    cell_id_prefix: str = "cell"

    @field_validator("cell_id_pattern")
    @classmethod
    def _pattern_has_cell_id(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "cell_id" not in compiled.groupindex:
            raise ValueError("needs a named group (?P<cell_id>...)")
        return value

    @field_validator("suffixes")
    @classmethod
    def _dotted_lower(cls, value: list[str]) -> list[str]:
        return [s.lower() if s.startswith(".") else f".{s.lower()}" for s in value]

    @property
    def done_path(self) -> Path:
        """Where files go once the daemon has a verdict for them."""
        return self.done_dir or self.folder / "done"

    @property
    def failed_path(self) -> Path:
        """Where unreadable files (and frames that got an ``error`` verdict) go."""
        return self.failed_dir or self.folder / "failed"


class VideoSourceConfig(BaseModel):
    """A video file, device or stream (RTSP/HTTP) read with OpenCV's VideoCapture.

    ``url`` is a file path, a stream URL or a device number ("0"). Every ``every_nth`` frame
    is inspected. A stream that stops raises ``SourceError`` (the daemon reconnects); a file
    ends at its last frame unless ``loop`` is set.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["video"] = "video"
    url: str
    every_nth: int = Field(default=1, ge=1)
    loop: bool = False
    grayscale: bool = False
    open_timeout_ms: int = Field(default=10000, gt=0)
    read_timeout_ms: int = Field(default=10000, gt=0)
    reconnect_backoff_s: float = Field(default=1.0, gt=0)
    cell_id_prefix: str = "cell"

    @model_validator(mode="after")
    def _url_not_blank(self) -> VideoSourceConfig:
        if not self.url.strip():
            raise ValueError("url must not be empty")
        return self


SourceConfig = Annotated[
    PylonSourceConfig | HotFolderSourceConfig | VideoSourceConfig,
    Field(discriminator="kind"),
]
