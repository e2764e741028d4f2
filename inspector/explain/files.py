"""Reading a reject's stored anomaly map, the same way for the explainer and the web page.

The daemon stores the map as ``.npy`` at the frame's size; older or foreign records may hold
a map with a leading channel axis, NaNs or the model's own resolution. ``read_map`` turns any
of them into a float32 ``H x W`` map (at the frame's size when that is given), or says why not.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from models.image_io import ImageError


def read_map(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The map in ``path`` as float32 ``H x W``, NaN as 0, resized to ``shape`` if given.

    Raises:
        ImageError: the file is missing, unreadable, empty or not a 2-D map.
    """
    try:
        amap = np.asarray(np.load(path, allow_pickle=False), dtype=np.float32).squeeze()
    except (OSError, ValueError, TypeError, EOFError) as exc:
        raise ImageError(f"map unreadable: {exc}") from None
    if amap.ndim != 2 or amap.size == 0:
        raise ImageError(f"map is not 2-D (shape {amap.shape})")
    amap = np.nan_to_num(amap, nan=0.0)
    if shape is not None and amap.shape != tuple(shape):
        amap = cv2.resize(amap, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return amap
