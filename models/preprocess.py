"""Frames as cameras deliver them -> the model's input tensor, and maps back to frame size.

Accepts 8- and 16-bit grayscale, BGR or RGB colour and float images of any size. The whole
frame is resized (no centre crop), so defects at edges and tabs stay in view. The result is
RGB in ``[0, 1]``: each backbone applies its own normalisation inside the model graph. NumPy
and OpenCV only: every backend uses this, including the ones without PyTorch.
"""

from __future__ import annotations

import cv2
import numpy as np

from models import MAX_PIXELS
from models.image_io import ImageError

MIN_SIDE = 8


def validate_frame(image: object) -> np.ndarray:
    """Check a frame is an inspectable image; raise ``ImageError`` saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"frame must be a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise ImageError(f"frame must be HxW or HxWxC, got shape {image.shape}")
    if image.ndim == 3 and image.shape[2] not in (1, 3):
        raise ImageError(f"frame must have 1 or 3 channels, got {image.shape[2]}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"frame of {w}x{h} px is smaller than {MIN_SIDE}x{MIN_SIDE}")
    if h * w > MAX_PIXELS:
        raise ImageError(f"frame of {w}x{h} px exceeds {MAX_PIXELS:,} pixels")
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise ImageError(f"unsupported pixel type {image.dtype}")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ImageError("frame contains NaN or infinite values")
    return image


def to_unit_float(image: np.ndarray, bit_depth: int | None = None) -> np.ndarray:
    """Scale to float32 in [0, 1]: 8-bit by 255, 16-bit by ``2**bit_depth - 1`` (16 if unset)."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        peak = float(2 ** (bit_depth or 16) - 1)
        return np.clip(image.astype(np.float32) / peak, 0.0, 1.0)
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def preprocess(
    image: np.ndarray,
    size: int = 224,
    bit_depth: int | None = None,
    channel_order: str = "bgr",
) -> np.ndarray:
    """One frame -> an RGB ``float32 [3, size, size]`` array in ``[0, 1]``.

    Args:
        image: ``HxW``, ``HxWx1`` or ``HxWx3`` array, uint8, uint16 or float in [0, 1].
        size: the model's input side.
        bit_depth: significant bits of uint16 data (12 for Mono12); 16 when None.
        channel_order: ``"bgr"`` (OpenCV, the default) or ``"rgb"`` for 3-channel frames.

    Raises:
        ImageError: the frame cannot be inspected (empty, tiny, huge, NaN, 4 channels...).

    Example:
        >>> preprocess(np.zeros((301, 457), np.uint16)).shape
        (3, 224, 224)
    """
    image = validate_frame(image)
    if channel_order not in ("bgr", "rgb"):
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    x = to_unit_float(image, bit_depth)
    h, w = x.shape[:2]
    interp = cv2.INTER_AREA if h > size or w > size else cv2.INTER_LINEAR
    x = cv2.resize(x, (size, size), interpolation=interp)
    if x.ndim == 2:
        x = np.repeat(x[:, :, None], 3, axis=2)
    elif channel_order == "bgr":
        x = x[:, :, ::-1]
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def as_bgr_order(image: np.ndarray, channel_order: str) -> np.ndarray:
    """A colour frame in OpenCV's BGR order, whatever order its source declared (gray as is).

    Stored pictures are BGR (``cv2.imwrite``, ``read_image``), so an RGB source's frames are
    turned once here and everything that reads them back (pages, the chat) sees true colours.
    """
    if channel_order == "rgb" and image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image[:, :, ::-1])
    return image


def resize_map(amap: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear resize of a model-resolution map to a frame's ``(H, W)``."""
    h, w = shape[:2]
    return cv2.resize(amap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
