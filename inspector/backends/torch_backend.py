"""PyTorch backend: the bundle's detector run eagerly, on CUDA when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inspector.backends.base import Backend
from models.bundle import load_detector


class TorchBackend(Backend):
    """Eager PyTorch inference under ``torch.inference_mode``."""

    name = "torch"

    def __init__(self, bundle: str | Path, device: str | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.detector = load_detector(bundle, self.device)

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            maps, scores = self.detector(x)
        return maps.float().cpu().numpy(), scores.float().cpu().numpy()
