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
from typing import Annotated, Any, Literal

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


def _cell_id_prefix() -> Any:
    return Field(
        default="cell", description="Prefix of the ids given to frames that arrive without one."
    )


class PylonSourceConfig(BaseModel):
    """A Basler camera through pypylon.

    ``serial`` or ``user_id`` selects the camera (neither: the first one found). ``trigger``:
    ``software`` (the daemon triggers one frame per MQTT trigger message), ``hardware``
    (FrameStart on ``trigger_line``) or ``free_run``.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["pylon"] = "pylon"
    serial: str | None = Field(default=None, description="Camera serial number.")
    user_id: str | None = Field(default=None, description="Camera user id (DeviceUserID).")
    pixel_format: PixelFormat = Field(default="Mono8", description="PixelFormat set on the camera.")
    trigger: Literal["software", "hardware", "free_run"] = Field(
        default="software",
        description="software: a frame per MQTT trigger; hardware: FrameStart on trigger_line.",
    )
    trigger_line: str = Field(default="Line1", description="hardware only: the TriggerSource.")
    trigger_activation: Literal["RisingEdge", "FallingEdge"] = Field(
        default="RisingEdge", description="hardware only: the edge that triggers."
    )
    exposure_us: float | None = Field(
        default=None, gt=0, description="ExposureTime in µs; null: the camera's setting."
    )
    frame_rate: float | None = Field(
        default=None, gt=0, description="free run only: AcquisitionFrameRate in Hz"
    )
    width: int | None = Field(default=None, gt=0, description="Width in px; null: the camera's.")
    height: int | None = Field(default=None, gt=0, description="Height in px; null: the camera's.")
    buffers: int = Field(default=16, ge=2, le=1024, description="MaxNumBuffer")
    grab_timeout_ms: int = Field(
        default=2000, gt=0, description="a triggered frame not here by then is an error frame"
    )
    reconnect_backoff_s: float = Field(
        default=1.0, gt=0, description="First wait before re-opening a lost camera."
    )
    reconnect_backoff_max_s: float = Field(
        default=30.0, gt=0, description="Longest wait between re-open attempts (back-off)."
    )
    emulation_images: Path | None = Field(
        default=None, description="emulated camera only: folder of images it serves"
    )
    cell_id_prefix: str = _cell_id_prefix()


class HotFolderSourceConfig(BaseModel):
    """A folder an ultrasound scanner writes image files into.

    ``cell_id_pattern`` is a regular expression searched in the file name with a named group
    ``cell_id`` (and optionally ``product``); a name it does not match gets a new unique id,
    an id that is not a valid cell id (see ``docs/mqtt.md``) gets an ``error`` result.
    Only regular files are taken (no links, pipes or devices), up to ``max_file_mb``.
    Processed files go to ``done_dir`` / ``failed_dir`` (default ``done/`` and ``failed/``
    inside the watched folder, which is watched without its subfolders).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["hotfolder"] = "hotfolder"
    folder: Path = Field(description="The folder the scanner writes into.")
    cell_id_pattern: str | None = Field(
        default=None, description="Regular expression with a `(?P<cell_id>...)` group."
    )
    suffixes: list[str] = Field(
        default_factory=lambda: sorted(IMAGE_SUFFIXES), description="File types taken."
    )
    done_dir: Path | None = Field(default=None, description="Where inspected files go.")
    failed_dir: Path | None = Field(
        default=None, description="Where unreadable files and error frames go."
    )
    settle_s: float = Field(
        default=0.5, gt=0, description="a file is complete when unchanged this long"
    )
    corrupt_after_s: float = Field(
        default=10.0, gt=0, description="an unreadable file unchanged this long is corrupt"
    )
    polling: bool = Field(default=False, description="poll instead of OS events (network shares)")
    max_file_mb: float = Field(
        default=512.0,
        gt=0,
        description="A larger file is not read: it gets an error result and goes to failed/.",
    )
    cell_id_prefix: str = _cell_id_prefix()

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
    url: str = Field(description="File path, stream URL or device number.")
    every_nth: int = Field(default=1, ge=1, description="Inspect every n-th frame.")
    loop: bool = Field(default=False, description="Start a file again at its end.")
    grayscale: bool = Field(default=False, description="Convert colour frames to gray.")
    open_timeout_ms: int = Field(default=10000, gt=0, description="Give up opening after this.")
    read_timeout_ms: int = Field(
        default=10000, gt=0, description="A stream silent this long has stopped."
    )
    reconnect_backoff_s: float = Field(
        default=1.0, gt=0, description="Wait before re-opening a stopped stream."
    )
    cell_id_prefix: str = _cell_id_prefix()

    @model_validator(mode="after")
    def _url_not_blank(self) -> VideoSourceConfig:
        if not self.url.strip():
            raise ValueError("url must not be empty")
        return self


SourceConfig = Annotated[
    PylonSourceConfig | HotFolderSourceConfig | VideoSourceConfig,
    Field(discriminator="kind"),
]
