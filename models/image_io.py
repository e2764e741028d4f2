"""Reading image files as frames: 8- or 16-bit, gray or colour, kept as they are on disk."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from models import MAX_PIXELS

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm"})


class ImageError(ValueError):
    """An image or frame that cannot be inspected; the message says why."""


def decode_image(data: bytes | np.ndarray) -> np.ndarray:
    """Decode an image file's bytes unchanged (bit depth kept); colour comes back BGR, alpha
    is dropped. Every image file the station reads is decoded here, under OpenCV's cap of
    ``MAX_PIXELS`` (``models/__init__.py``): a huge image is refused before it is allocated.

    Raises:
        ImageError: larger than ``MAX_PIXELS``, or not an image (corrupt or truncated).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    except cv2.error:
        raise ImageError(f"image larger than {MAX_PIXELS:,} pixels") from None
    if image is None:
        raise ImageError("not a readable image (corrupt or truncated)")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Read a file unchanged (bit depth kept); colour comes back BGR, alpha is dropped.

    Raises:
        ImageError: the file is missing, unreadable or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        return decode_image(np.fromfile(path, dtype=np.uint8))
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a directory")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a lossless PNG (8 or 16 bit), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ImageError(f"{path}: could not encode PNG")
    buf.tofile(path)
    return path
