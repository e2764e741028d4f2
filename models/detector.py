"""The BatteryGPT-style detector: image batch in, anomaly map and image score out.

This module is the single graph that export turns into ONNX: encoder taps, decoder, cached
text embeddings, memory bank, fusion, smoothing and the image score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.decoder import TextDecoder
from models.encoder import TapEncoder
from models.memory_bank import MemoryBank

FUSIONS = ("mean", "text", "memory")


@dataclass
class DetectorMaps:
    """The parts of a forward pass, at model resolution (``[B, S, S]`` each)."""

    text: torch.Tensor
    memory: torch.Tensor | None
    fused: torch.Tensor
    anomaly_map: torch.Tensor
    score: torch.Tensor


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius ``4 sigma``."""
    radius = max(1, int(4 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


class BatteryDetector(nn.Module):
    """Scores a batch of preprocessed images ``[B, 3, S, S]``.

    Returns ``(anomaly_map [B, S, S] in [0, 1], image_score [B])``. The map is the fusion of the
    text-similarity map and (when references exist) the memory-bank map, lightly smoothed; the
    score is its maximum.

    Example:
        >>> from models.bundle import build_detector
        >>> det = build_detector("tiny", product="pouch cell")
        >>> amap, score = det(torch.zeros(2, 3, 224, 224))
        >>> tuple(amap.shape), tuple(score.shape)
        ((2, 224, 224), (2,))
    """

    def __init__(
        self,
        encoder: TapEncoder,
        decoder: TextDecoder,
        text_embeddings: torch.Tensor,
        memory_bank: MemoryBank | None = None,
        fusion: str = "mean",
        memory_weight: float = 0.5,
        smoothing_sigma: float = 4.0,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if fusion == "memory" and memory_bank is None:
            raise ValueError("fusion 'memory' needs reference images (a memory bank)")
        if not 0.0 <= memory_weight <= 1.0:
            raise ValueError(f"memory_weight must be within [0, 1], got {memory_weight}")
        self.encoder = encoder
        self.decoder = decoder
        self.register_buffer("text_embeddings", text_embeddings.detach().clone())
        self.memory_bank = memory_bank
        self.fusion = fusion
        self.memory_weight = memory_weight
        self.smoothing_sigma = smoothing_sigma
        kernel = gaussian_kernel(smoothing_sigma) if smoothing_sigma > 0 else torch.ones(1)
        self.register_buffer("smoothing_kernel", kernel, persistent=False)

    @property
    def image_size(self) -> int:
        return self.encoder.image_size

    def upsample(self, per_tap: torch.Tensor) -> torch.Tensor:
        """``[B, T, N]`` patch values -> mean over taps -> bilinear ``[B, S, S]``."""
        gh, gw = self.encoder.grid_size
        grid = per_tap.mean(dim=1).reshape(-1, 1, gh, gw)
        size = (self.image_size, self.image_size)
        return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[:, 0]

    def smooth(self, amap: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur with reflected borders."""
        k = self.smoothing_kernel
        if k.numel() == 1:
            return amap
        r = k.numel() // 2
        x = F.pad(amap[:, None], (r, r, r, r), mode="reflect")
        x = F.conv2d(x, k.view(1, 1, 1, -1))
        x = F.conv2d(x, k.view(1, 1, -1, 1))
        return x[:, 0]

    def fuse(self, text_map: torch.Tensor, memory_map: torch.Tensor | None) -> torch.Tensor:
        if memory_map is None or self.fusion == "text":
            return text_map
        if self.fusion == "memory":
            return memory_map
        w = self.memory_weight
        return (1.0 - w) * text_map + w * memory_map

    def maps(self, x: torch.Tensor) -> DetectorMaps:
        """All intermediate maps of one forward pass (for tests, training and explanations)."""
        taps = self.encoder(x)
        text_map = self.upsample(self.decoder.abnormal_maps(taps, self.text_embeddings))
        memory_map = self.upsample(self.memory_bank(taps)) if self.memory_bank is not None else None
        fused = self.fuse(text_map, memory_map)
        amap = self.smooth(fused).clamp(0.0, 1.0)
        return DetectorMaps(text_map, memory_map, fused, amap, amap.flatten(1).amax(dim=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.maps(x)
        return m.anomaly_map, m.score
