"""The one interface every runtime backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Backend(ABC):
    """Runs a bundle's detector on preprocessed batches.

    ``infer`` takes ``float32 [B, 3, S, S]`` (see ``models.preprocess``) and returns
    ``(maps float32 [B, S, S] in [0, 1], scores float32 [B])``. Backends hold no per-frame
    state, so one instance serves a whole run.
    """

    name: str = "base"

    @abstractmethod
    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly maps and image scores of a batch at model resolution."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release devices and sessions."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
