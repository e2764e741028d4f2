"""Frames in, inspections out: ROI, tiles, preprocessing, a backend, stitching and the
decision, for any caller.

Used by ``inspector predict``, calibration, evaluation and the line daemon; knows nothing about
files or MQTT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.runtime.backends import Backend, create_backend
from inspector.vision.decision import Decision, decide
from inspector.vision.roi import RoiView, to_frame
from inspector.vision.tiling import TileGrid, cut_frame, stitch
from models.image_io import ImageError
from models.preprocess import preprocess, resize_map, validate_frame
from models.recipe import Recipe, load_recipe, model_id

TILE_BATCH = 16  # tiles per backend call: bounds memory (the bank's distance matrix) per call


def canvas_scale(recipe: Recipe) -> float | None:
    """Canvas px per frame px when the recipe tiles (frame pitch / inspection pitch); None when
    it does not (a ROI is fitted to one model input)."""
    if not recipe.tiled:
        return None
    return float(recipe.pixel_pitch_mm / recipe.inspect_mm_per_px)  # type: ignore[operator]


@dataclass
class Prepared:
    """One frame made ready for the backend: its model inputs and where they came from.

    ``view`` and ``grid`` are None for a recipe without ROI or tiling: the whole frame is one
    squashed model input, as before ROIs existed.
    """

    inputs: np.ndarray  # float32 [T, 3, S, S]: one per tile
    frame_shape: tuple[int, ...]
    view: RoiView | None = None
    grid: TileGrid | None = None


def prepare_frame(recipe: Recipe, frame: np.ndarray, channel_order: str = "bgr") -> Prepared:
    """One frame's model inputs by a recipe (whole frame, or its ROI cut into tiles); the one
    path of the station, ``predict``, calibration and int8 calibration.

    Raises:
        ImageError: the frame cannot be inspected (unreadable, or no cell found).
    """
    r = recipe
    if r.roi is None and not r.tiled:
        x = preprocess(frame, r.input_size, r.bit_depth, channel_order)
        return Prepared(x[None], tuple(frame.shape))
    validate_frame(frame)
    tiles, view, grid = cut_frame(frame, r.roi, canvas_scale(r), r.input_size, r.tile_overlap)
    inputs = np.stack([preprocess(t, r.input_size, r.bit_depth, channel_order) for t in tiles])
    return Prepared(inputs, tuple(frame.shape), view, grid)


@dataclass
class Inspection:
    """One frame's result. ``map`` covers the whole frame, at model resolution (whole-frame
    recipes) or at the inspection pitch (ROI and tiles, 0 outside the ROI); ``full_map()``
    is at the frame's own resolution."""

    decision: Decision
    map: np.ndarray
    frame_shape: tuple[int, ...]
    view: RoiView | None = None
    grid: TileGrid | None = None
    patch_area_px: float | None = None  # one model patch, in frame px

    @property
    def verdict(self) -> str:
        return self.decision.verdict

    def full_map(self) -> np.ndarray:
        return resize_map(self.map, self.frame_shape)

    def outlines(self) -> tuple[np.ndarray | None, list[np.ndarray]]:
        """The inspected ROI's polygon and the tiles' quadrilaterals, in frame px (for the
        overlay); ``(None, [])`` for a whole-frame recipe."""
        if self.view is None:
            return None, []
        tiles = []
        if self.grid is not None and len(self.grid) > 1:
            for x, y, w, h in self.grid.boxes:
                corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64)
                tiles.append(self.view.canvas_to_frame(corners))
        return self.view.outline, tiles


class Predictor:
    """Inspects frames with one bundle: ROI -> tiles -> preprocess -> backend -> stitch ->
    decision. ``inspector predict``, calibration, evaluation and the daemon all go through
    ``prepare_frame``, ``infer`` and ``decide``, so they see the same maps.

    Example:
        >>> p = Predictor("bundles/pouch")                      # doctest: +SKIP
        >>> p.inspect(frame).verdict                            # doctest: +SKIP
        'pass'
    """

    def __init__(
        self,
        bundle: str | Path,
        backend: str | Backend | None = None,
        recipe: Recipe | None = None,
        tile_batch: int = TILE_BATCH,
        **backend_options: object,
    ) -> None:
        self.bundle = Path(bundle)
        self.recipe = recipe or load_recipe(self.bundle)
        self.model_id = model_id(self.bundle, self.recipe)
        self.tile_batch = tile_batch
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            self.backend = create_backend(
                backend or self.recipe.backend, self.bundle, **backend_options
            )

    def prepare_frame(self, frame: np.ndarray, channel_order: str = "bgr") -> Prepared:
        """The model inputs of one frame; raises ``ImageError`` for frames it cannot inspect
        (unreadable, or no cell found by ``roi: auto``)."""
        return prepare_frame(self.recipe, frame, channel_order)

    def infer(self, prepared: Sequence[Prepared]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Tile maps and scores per frame; all frames' tiles go through the backend together,
        ``tile_batch`` at a time."""
        if not prepared:
            return []
        inputs = np.concatenate([p.inputs for p in prepared])
        maps, scores = [], []
        for i in range(0, len(inputs), self.tile_batch):
            m, s = self.backend.infer(inputs[i : i + self.tile_batch])
            maps.append(m)
            scores.append(s)
        all_maps, all_scores = np.concatenate(maps), np.concatenate(scores)
        out, start = [], 0
        for p in prepared:
            n = len(p.inputs)
            out.append((all_maps[start : start + n], all_scores[start : start + n]))
            start += n
        return out

    def inspect_batch(
        self, frames: Sequence[np.ndarray], channel_order: str = "bgr"
    ) -> list[Inspection | ImageError]:
        """Inspect several frames in one backend call; a bad frame yields its ``ImageError``."""
        inputs: list[Prepared | ImageError] = []
        for frame in frames:
            try:
                inputs.append(self.prepare_frame(frame, channel_order))
            except ImageError as exc:
                inputs.append(exc)
        good = [x for x in inputs if isinstance(x, Prepared)]
        outputs = iter(self.infer(good))
        return [
            x if isinstance(x, ImageError) else self.decide(x, *next(outputs)) for x in inputs
        ]

    def decide(self, prepared: Prepared, maps: np.ndarray, scores: np.ndarray) -> Inspection:
        """Stitch one frame's tile maps into a frame map and decide by the bundle's recipe."""
        shape = prepared.frame_shape
        recipe = self.recipe
        if prepared.view is None or prepared.grid is None:
            amap, score = maps[0], float(scores[0])
            area = shape[0] * shape[1] / recipe.patch_grid**2
        else:
            view, grid = prepared.view, prepared.grid
            s = min(1.0, view.scale)
            map_shape = (max(1, round(shape[0] * s)), max(1, round(shape[1] * s)))
            amap = to_frame(stitch(maps, grid), view, map_shape)
            score = float(amap.max())
            _, _, bw, bh = grid.boxes[0]
            area = bw * bh / recipe.patch_grid**2 / view.scale**2
        decision = decide(amap, score, shape, recipe.thresholds, recipe.pixel_pitch_mm)
        return Inspection(decision, amap, shape, prepared.view, prepared.grid, area)

    def inspect(self, frame: np.ndarray, channel_order: str = "bgr") -> Inspection:
        """Inspect one frame; raises ``ImageError`` for a frame that cannot be inspected."""
        result = self.inspect_batch([frame], channel_order)[0]
        if isinstance(result, ImageError):
            raise result
        return result

    def close(self) -> None:
        self.backend.close()
