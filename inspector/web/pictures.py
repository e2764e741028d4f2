"""The pictures of a reject as PNG bytes: the frame, the heat-map overlay and a thumbnail.

Files are found through the store's record of a reject, never from a path in a request, and
every path is resolved and checked to lie inside the data directory before it is opened.
Rendered pictures are kept in a small in-memory cache: a reject never changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from inspector.core.result import Result
from inspector.explain.facts import facts_from_result
from inspector.explain.files import read_map
from inspector.vision.decision import Decision
from inspector.vision.overlay import MIN_LONG_SIDE, display_image, render_overlay
from models.image_io import ImageError, read_image

THUMB_WIDTH = 320
CACHE_BYTES = 64 * 2**20


class PictureMissing(LookupError):
    """The reject has no stored picture, or its file is gone or outside the data directory."""


def inside(data_dir: Path, stored: str | Path | None) -> Path:
    """The stored path resolved, if it is an existing file inside ``data_dir``.

    Relative paths are taken relative to ``data_dir``. Symbolic links are followed before the
    check, so a link pointing out of the data directory is refused too.

    Raises:
        PictureMissing: no path, no such file, or a file outside ``data_dir``.
    """
    if stored is None or str(stored) == "" or "\x00" in str(stored):
        raise PictureMissing("no file recorded")
    root = data_dir.resolve()
    path = Path(stored)
    path = (path if path.is_absolute() else root / path).resolve()
    if not path.is_relative_to(root):
        raise PictureMissing("file outside the data directory")
    if not path.is_file():
        raise PictureMissing("file is gone")
    return path


def stored_file(data_dir: Path, stored: object) -> Path | None:
    """``inside(data_dir, stored)``, or None where that refuses the path."""
    try:
        return inside(data_dir, stored)  # type: ignore[arg-type]
    except PictureMissing:
        return None


def decision_of(result: dict, verdict: str = "fail") -> Decision:
    """Rebuild the verdict, score, thresholds and regions of a stored result for drawing.

    Malformed regions and thresholds are read as ``facts_from_result`` reads them (left out,
    or the defaults), so the boxes are numbered as the explanation numbers them.
    """
    typed = Result.from_payload(result)
    return replace(facts_from_result(typed).decision(), verdict=typed.verdict or verdict)


def png(image: np.ndarray) -> bytes:
    """Encode an image as PNG bytes."""
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ImageError("could not encode PNG")
    return buf.tobytes()


def frame_part(rendered: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """The frame area of a ``render_overlay`` picture, scaled back to the frame's size.

    ``render_overlay`` enlarges frames whose long side is under ``MIN_LONG_SIDE``, puts a
    header above and a colour bar to the right; the frame area is the bottom-left block.
    """
    h, w = int(frame_shape[0]), int(frame_shape[1])
    zoom = max(1.0, MIN_LONG_SIDE / max(h, w))
    zh, zw = int(round(h * zoom)), int(round(w * zoom))
    body = rendered[rendered.shape[0] - zh :, :zw]
    if (zh, zw) != (h, w):
        body = cv2.resize(body, (w, h), interpolation=cv2.INTER_AREA)
    return body


class Pictures:
    """Renders and caches the pictures of rejects under one data directory."""

    def __init__(self, data_dir: Path, cache_bytes: int = CACHE_BYTES) -> None:
        self.data_dir = Path(data_dir)
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._lock = threading.Lock()

    def _cached(self, key: tuple[str, str], make) -> bytes:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = make()
        with self._lock:
            self._cache[key] = data
            total = sum(len(v) for v in self._cache.values())
            while total > self._cache_bytes and len(self._cache) > 1:
                total -= len(self._cache.popitem(last=False)[1])
        return data

    def _image(self, stored: str | Path | None) -> np.ndarray:
        try:
            return read_image(inside(self.data_dir, stored))
        except ImageError as exc:
            raise PictureMissing(str(exc)) from None

    def _map(self, stored: str | Path | None, shape: tuple[int, int]) -> np.ndarray:
        try:
            return read_map(inside(self.data_dir, stored), shape)
        except ImageError as exc:
            raise PictureMissing(str(exc)) from None

    def image_png(self, reject: dict) -> bytes:
        """The frame as an 8-bit PNG a browser shows (16-bit and float stretched).

        ``reject`` is the store's record (``frame_id``, ``image_path``, ``map_path``) with its
        result payload (``regions``, ``thresholds``, ``image_score``) folded in.
        """
        return self._cached(
            (reject["frame_id"], "image"),
            lambda: png(display_image(self._image(reject.get("image_path")))),
        )

    def overlay_png(self, reject: dict) -> bytes:
        """The heat map and numbered region boxes over the frame, at the frame's own size.

        Drawn by ``render_overlay``; its verdict header and colour bar are cut off because the
        page shows both as text, and a frame-sized overlay lines up with the plain frame.
        """

        def make() -> bytes:
            image = self._image(reject.get("image_path"))
            amap = self._map(reject.get("map_path"), image.shape[:2])
            return png(frame_part(render_overlay(image, amap, decision_of(reject)), image.shape))

        return self._cached((reject["frame_id"], "overlay"), make)

    def thumb_png(self, reject: dict) -> bytes:
        """The overlay ``THUMB_WIDTH`` pixels wide, for the list.

        The frame and map are shrunk before drawing, so a list of large frames stays cheap.
        """

        def make() -> bytes:
            image = self._image(reject.get("image_path"))
            amap = self._map(reject.get("map_path"), image.shape[:2])
            h, w = image.shape[:2]
            f = min(1.0, MIN_LONG_SIDE / max(h, w))
            if f < 1.0:
                size = (max(1, round(w * f)), max(1, round(h * f)))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                amap = cv2.resize(amap, size, interpolation=cv2.INTER_AREA)
            decision = decision_of(reject)
            decision.regions = [
                replace(r, bbox=tuple(int(round(v * f)) for v in r.bbox)) for r in decision.regions
            ]
            body = frame_part(render_overlay(image, amap, decision), image.shape)
            height = max(1, round(body.shape[0] * THUMB_WIDTH / body.shape[1]))
            return png(cv2.resize(body, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA))

        return self._cached((reject["frame_id"], "thumb"), make)
