"""Frames in, inspections out: preprocessing, a backend and the decision, for any caller.

Used by ``inspector predict`` and by the line daemon; knows nothing about files or MQTT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.backends import Backend, create_backend
from inspector.decision import Decision, decide
from models.image_io import ImageError
from models.preprocess import preprocess, resize_map
from models.recipe import Recipe, load_recipe, model_id


@dataclass
class Inspection:
    """One frame's result. ``map`` is at model resolution; ``full_map()`` at the frame's."""

    decision: Decision
    map: np.ndarray
    frame_shape: tuple[int, ...]

    @property
    def verdict(self) -> str:
        return self.decision.verdict

    def full_map(self) -> np.ndarray:
        return resize_map(self.map, self.frame_shape)


class Predictor:
    """Inspects frames with one bundle.

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
        **backend_options: object,
    ) -> None:
        self.bundle = Path(bundle)
        self.recipe = recipe or load_recipe(self.bundle)
        self.model_id = model_id(self.bundle, self.recipe)
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            self.backend = create_backend(
                backend or self.recipe.backend, self.bundle, **backend_options
            )

    def prepare(self, frame: np.ndarray, channel_order: str = "bgr") -> np.ndarray:
        """The model input of one frame; raises ``ImageError`` for frames it cannot inspect."""
        return preprocess(frame, self.recipe.input_size, self.recipe.bit_depth, channel_order)

    def inspect_batch(
        self, frames: Sequence[np.ndarray], channel_order: str = "bgr"
    ) -> list[Inspection | ImageError]:
        """Inspect several frames in one backend call; a bad frame yields its ``ImageError``."""
        inputs: list[np.ndarray | ImageError] = []
        for frame in frames:
            try:
                inputs.append(self.prepare(frame, channel_order))
            except ImageError as exc:
                inputs.append(exc)
        good = [i for i, x in enumerate(inputs) if not isinstance(x, ImageError)]
        results: list[Inspection | ImageError] = [x for x in inputs]  # type: ignore[misc]
        if good:
            maps, scores = self.backend.infer(np.stack([inputs[i] for i in good]))
            for j, i in enumerate(good):
                results[i] = self.decide(maps[j], float(scores[j]), frames[i].shape)
        return results

    def decide(self, amap: np.ndarray, score: float, frame_shape: tuple[int, ...]) -> Inspection:
        """The verdict for one model-resolution map and score, by the bundle's recipe."""
        shape = tuple(frame_shape)
        recipe = self.recipe
        decision = decide(amap, score, shape, recipe.thresholds, recipe.pixel_pitch_mm)
        return Inspection(decision, amap, shape)

    def inspect(self, frame: np.ndarray, channel_order: str = "bgr") -> Inspection:
        """Inspect one frame; raises ``ImageError`` for a frame that cannot be inspected."""
        result = self.inspect_batch([frame], channel_order)[0]
        if isinstance(result, ImageError):
            raise result
        return result

    def close(self) -> None:
        self.backend.close()
