"""Tiling a ROI canvas at the inspection pitch, and stitching the tile maps back.

Tiles are ``side`` x ``side`` canvas px (the model's input side, so a tile is scored at the
pitch it was cut at), laid out evenly so the first and last touch the canvas edges and
neighbours overlap by at least ``overlap`` of a side. Each tile's map is weighted by a Hann
(raised-cosine) window before the weighted maps are summed and divided by the summed weights:
values near a tile's border, where the network sees least context, count least, and the
stitched map shows no seams. A single tile covering the whole canvas (ROI-only inspection) is
the same code with one box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from inspector.vision.roi import RoiView, extract, locate
from models.recipe import Recipe, Roi

if TYPE_CHECKING:  # models.bundle imports torch; only its type is wanted here
    from models.bundle import Tiler

WINDOW_FLOOR = 1e-3  # a Hann window is 0 at its edge; a canvas edge has only that tile


@dataclass(frozen=True)
class TileGrid:
    """Tile boxes ``(x, y, w, h)`` over a canvas of ``size`` ``(width, height)``."""

    boxes: tuple[tuple[int, int, int, int], ...]
    size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.boxes)


def positions(length: int, side: int, overlap: float) -> list[int]:
    """Start offsets of tiles of ``side`` px covering ``length`` px with at least ``overlap``.

    Example:
        >>> positions(600, 224, 0.25)
        [0, 188, 376]
    """
    if length <= side:
        return [0]
    stride = side * (1.0 - overlap)
    n = math.ceil((length - side) / stride - 1e-9) + 1
    return [round(i * (length - side) / (n - 1)) for i in range(n)]


def tile_grid(size: tuple[int, int], side: int | None, overlap: float = 0.25) -> TileGrid:
    """The tiles of a canvas of ``size`` ``(width, height)``; ``side`` None: one tile, whole."""
    w, h = size
    if side is None:
        return TileGrid(((0, 0, w, h),), size)
    boxes = tuple(
        (x, y, min(side, w - x), min(side, h - y))
        for y in positions(h, side, overlap)
        for x in positions(w, side, overlap)
    )
    return TileGrid(boxes, size)


def cut(canvas: np.ndarray, grid: TileGrid) -> list[np.ndarray]:
    """The tiles' pixels (views into ``canvas``)."""
    return [canvas[y : y + h, x : x + w] for x, y, w, h in grid.boxes]


def window(h: int, w: int) -> np.ndarray:
    """A separable Hann window ``[h, w]``, peak 1, floored just above 0."""
    wy = np.sin(np.pi * (np.arange(h) + 0.5) / h) ** 2
    wx = np.sin(np.pi * (np.arange(w) + 0.5) / w) ** 2
    return np.maximum(np.outer(wy, wx), WINDOW_FLOOR).astype(np.float32)


def stitch(maps: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Tile maps ``[T, s, s]`` (any square model resolution) -> one canvas map ``[H, W]``.

    One tile is resized to its box; several are Hann-weighted and blended.
    """
    w, h = grid.size
    if len(grid) == 1:
        bx, by, bw, bh = grid.boxes[0]
        out = np.zeros((h, w), np.float32)
        out[by : by + bh, bx : bx + bw] = _fit(maps[0], bw, bh)
        return out
    acc = np.zeros((h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    windows: dict[tuple[int, int], np.ndarray] = {}
    for amap, (x, y, bw, bh) in zip(maps, grid.boxes, strict=True):
        win = windows.get((bh, bw))
        if win is None:
            win = windows[(bh, bw)] = window(bh, bw)
        acc[y : y + bh, x : x + bw] += _fit(amap, bw, bh) * win
        weight[y : y + bh, x : x + bw] += win
    return acc / np.maximum(weight, WINDOW_FLOOR**2)


def _fit(amap: np.ndarray, w: int, h: int) -> np.ndarray:
    if amap.shape == (h, w):
        return amap.astype(np.float32, copy=False)
    return cv2.resize(amap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def cut_frame(
    frame: np.ndarray, roi: Roi | None, scale: float | None, side: int, overlap: float
) -> tuple[list[np.ndarray], RoiView, TileGrid]:
    """A frame's ROI canvas cut into tiles: the tiles' pixels, the view and the grid.

    Args:
        frame: the frame.
        roi: the recipe's ROI (None: the whole frame).
        scale: canvas px per frame px (frame pitch / inspection pitch); None: the ROI is one
            tile, squashed to ``side`` like a whole frame.
        side: the model's input side (a tile's side in canvas px).
        overlap: share of a tile's side its neighbours overlap.

    Raises:
        ImageError: ``roi: auto`` found no cell.
    """
    view = locate(frame, roi, scale, side)
    grid = tile_grid(view.size, side if scale is not None else None, overlap)
    return cut(extract(frame, view), grid), view, grid


def inspection_tiler(
    roi: Roi | None,
    pixel_pitch_mm: float | None,
    inspect_mm_per_px: float | None,
    overlap: float,
) -> Tiler | None:
    """Reference and training frames cut as inspection cuts frames: ``(frame, side) -> tiles``
    for a bundle with this ROI and pitch, so the memory bank and the decoder see what
    inspection scores; None when inspection squashes the whole frame into one model input.

    Args:
        roi: the ROI (None: the whole frame).
        pixel_pitch_mm: the frames' own pitch (needed with ``inspect_mm_per_px``).
        inspect_mm_per_px: the inspection pitch; None: the ROI is one squashed model input.
        overlap: share of a tile's side its neighbours overlap.
    """
    if roi is None and inspect_mm_per_px is None:
        return None
    scale = pixel_pitch_mm / inspect_mm_per_px if inspect_mm_per_px else None

    def tiler(frame: np.ndarray, side: int) -> list[np.ndarray]:
        return cut_frame(frame, roi, scale, side, overlap)[0]

    return tiler


def cut_as_inspected(frames: Sequence[np.ndarray], recipe: Recipe) -> list[np.ndarray]:
    """The model inputs a bundle's inspection cuts ``frames`` into (its ROI's tiles, frame after
    frame); the frames themselves when it inspects whole frames.

    Raises:
        ImageError: ``roi: auto`` found no cell on a frame.
    """
    tiler = inspection_tiler(
        recipe.roi, recipe.pixel_pitch_mm, recipe.inspect_mm_per_px, recipe.tile_overlap
    )
    if tiler is None:
        return list(frames)
    return [tile for frame in frames for tile in tiler(frame, recipe.input_size)]
