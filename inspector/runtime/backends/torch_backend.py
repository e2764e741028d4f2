"""PyTorch backend: the bundle's detector run eagerly, on CUDA when present.

On CUDA the encoder runs under fp16 (or bf16) autocast with PyTorch's fused
scaled-dot-product attention; everything after it (decoder, cosines, softmax, memory-bank
distances, smoothing) stays fp32 (``models.numerics``). It can be wrapped in ``torch.compile``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from inspector.runtime.backends.base import Backend
from models.bundle import load_detector

PRECISIONS = ("fp32", "fp16", "bf16", "auto")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain fp32).

    ``auto`` means fp16 on CUDA and fp32 on the CPU. Not bf16: its 8-bit mantissa moves the
    encoder's tokens by ~0.4 %, several times fp16's error in the map (bf16 stays a choice).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


class TorchBackend(Backend):
    """Eager (or compiled) PyTorch inference under ``torch.inference_mode``.

    Args:
        bundle: the bundle folder.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; CUDA when available by default.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``auto`` (autocast on CUDA only).
        compile: wrap the detector in ``torch.compile`` (first batches of a new size are slow).
    """

    name = "torch"

    def __init__(
        self,
        bundle: str | Path,
        device: str | None = None,
        precision: str = "auto",
        compile: bool = False,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.detector = load_detector(bundle, self.device)
        self.dtype = autocast_dtype(precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model = (
            torch.compile(self.detector, dynamic=True, mode="max-autotune-no-cudagraphs")
            if compile
            else self.detector
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode(), self._autocast():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            maps, scores = self.model(x)
        return maps.float().cpu().numpy(), scores.float().cpu().numpy()
