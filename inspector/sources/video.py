"""Scanners with a video output or an RTSP stream, read with OpenCV's VideoCapture.

Every ``every_nth`` frame becomes a Frame with a new unique, sortable cell id; the frames in
between are grabbed but not decoded. A stream (URL or device) that stops delivering raises
``SourceError``, and the daemon reopens it with back-off. A video file plays once and then
the source idles until closed (``ended`` is set), or plays again and again with ``loop``.

Example:
    >>> cfg = VideoSourceConfig(url="rtsp://scanner.local/stream1", every_nth=5)
    >>> source = VideoSource(cfg)  # open(), frames(), close()
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from inspector.sources.base import (
    RECONNECT_BACKOFF_S,
    Frame,
    Source,
    SourceError,
    SourceSection,
    cell_id_prefix_field,
    new_cell_id,
)

log = logging.getLogger(__name__)

KIND = "video"


class VideoSourceConfig(SourceSection):
    """A video file, device or stream (RTSP/HTTP) read with OpenCV's VideoCapture.

    ``url`` is a file path, a stream URL or a device number ("0"). Every ``every_nth`` frame
    is inspected. A stream that stops raises ``SourceError`` (the daemon reconnects); a file
    ends at its last frame unless ``loop`` is set.
    """

    kind: Literal[KIND] = KIND
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
    cell_id_prefix: str = cell_id_prefix_field()

    @model_validator(mode="after")
    def _url_not_blank(self) -> VideoSourceConfig:
        if not self.url.strip():
            raise ValueError("url must not be empty")
        return self

    def reconnect_backoff(self) -> tuple[float, float]:
        """``reconnect_backoff_s`` up to the common longest wait."""
        return self.reconnect_backoff_s, RECONNECT_BACKOFF_S[1]


class VideoSource(Source):
    """Frames from a video file, capture device or network stream."""

    name = KIND

    def __init__(self, cfg: VideoSourceConfig) -> None:
        self.cfg = cfg
        self.ended = threading.Event()  # set when a file (without ``loop``) has played out
        self._cap: cv2.VideoCapture | None = None
        self._closed = threading.Event()
        self._reading = threading.Lock()  # held while frames() is inside the capture
        self._index = 0

    @property
    def is_file(self) -> bool:
        """Whether ``url`` names a file (which ends) rather than a stream or device."""
        return "://" not in self.cfg.url and not self.cfg.url.isdigit()

    def open(self) -> None:
        """Open the file or connect to the stream; SourceError if that fails."""
        self.close()
        self._closed.clear()
        self.ended.clear()
        url = self.cfg.url
        if self.is_file and not Path(url).is_file():
            raise SourceError(f"video file {url} does not exist")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            self.cfg.open_timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            self.cfg.read_timeout_ms,
        ]
        target: str | int = int(url) if url.isdigit() else url
        cap = cv2.VideoCapture(target, cv2.CAP_ANY, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video {_redacted(url)}")
        self._cap = cap
        self._index = 0

    def close(self) -> None:
        """Release the capture; a running ``frames()`` returns. Safe to call twice."""
        self._closed.set()
        # Wait for a read in progress (at most the read timeout) before releasing under it.
        got = self._reading.acquire(timeout=self.cfg.read_timeout_ms / 1000 + 1)
        try:
            cap, self._cap = self._cap, None
            if cap is not None:
                cap.release()
        finally:
            if got:
                self._reading.release()

    def frames(self) -> Iterator[Frame]:
        """Yield every ``every_nth`` frame until ``close()``; SourceError when a stream stops."""
        while not self._closed.is_set():
            with self._reading:
                if self._cap is None or self._closed.is_set():
                    return
                taken, image, pos_ms = self._next(self._cap)
            if image is None:
                if not self.is_file:
                    raise SourceError(f"video stream {_redacted(self.cfg.url)} stopped")
                if self.cfg.loop and self._index > 0:
                    with self._reading:
                        rewound = self._cap is not None and self._cap.set(
                            cv2.CAP_PROP_POS_FRAMES, 0
                        )
                    if rewound:
                        continue
                log.info("video file %s ended after %d frames", self.cfg.url, self._index)
                self.ended.set()
                self._closed.wait()
                return
            yield Frame(
                cell_id=new_cell_id(self.cfg.cell_id_prefix),
                image=image,
                timestamp=datetime.now(UTC),
                meta={"source": self.name, "frame_index": taken, "pos_ms": pos_ms},
            )

    def _next(self, cap: cv2.VideoCapture) -> tuple[int, np.ndarray | None, float]:
        """Skip to the next frame to inspect and decode it: (its index, image, position)."""
        while self._index % self.cfg.every_nth:
            if not cap.grab():
                return self._index, None, 0.0
            self._index += 1
        ok, image = cap.read()
        if not ok or image is None:
            return self._index, None, 0.0
        taken = self._index
        self._index += 1
        if self.cfg.grayscale and image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return taken, image, float(cap.get(cv2.CAP_PROP_POS_MSEC))


def _redacted(url: str) -> str:
    """``url`` without a password (rtsp://user:secret@host -> rtsp://user:***@host)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)
