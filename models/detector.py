"""The BatteryGPT-style detector: image batch in, anomaly map and image score out.

This module is the single graph that export turns into ONNX: backbone taps, decoder, cached
class embeddings, memory bank, fusion, smoothing and the image score. Input: images in
``[0, 1]``; the backbone applies its own normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.backbones.base import Backbone
from models.decoder import TextDecoder, patches_to_image
from models.memory_bank import LN2, MemoryBank
from models.numerics import fp32

FUSIONS = ("mean", "text", "memory")


@dataclass
class DetectorMaps:
    """The parts of a forward pass, at model resolution (``[B, S, S]`` each)."""

    text: torch.Tensor | None  # None when the fusion ignores the decoder
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
    decoder's map and (when references exist) the memory-bank map, lightly smoothed; the
    score is its maximum. Both maps are on one scale before fusing: the memory map through
    its bank's leave-one-out scale, the decoder's through ``text_scale`` when training
    measured one on the references (0.5 = the most abnormal normal patch seen).

    Example:
        >>> from models.bundle import build_detector
        >>> det = build_detector("tiny", product="pouch cell")
        >>> amap, score = det(torch.zeros(2, 3, 224, 224))
        >>> tuple(amap.shape), tuple(score.shape)
        ((2, 224, 224), (2,))
    """

    def __init__(
        self,
        encoder: Backbone,
        decoder: TextDecoder,
        text_embeddings: torch.Tensor,
        memory_bank: MemoryBank | None = None,
        fusion: str = "mean",
        memory_weight: float = 0.5,
        smoothing_sigma: float = 4.0,
        text_scale: float | None = None,
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
        self.text_scale = text_scale
        kernel = gaussian_kernel(smoothing_sigma) if smoothing_sigma > 0 else torch.ones(1)
        self.register_buffer("smoothing_kernel", kernel, persistent=False)

    @property
    def image_size(self) -> int:
        return self.encoder.image_size

    def upsample(self, per_tap: torch.Tensor) -> torch.Tensor:
        """``[B, T, N]`` patch values -> mean over taps -> bilinear ``[B, S, S]``."""
        size = (self.image_size, self.image_size)
        return patches_to_image(per_tap.mean(dim=1), self.encoder.grid_size, size)

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

    @property
    def uses_decoder(self) -> bool:
        return self.memory_bank is None or self.fusion != "memory"

    def decoder_map(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """The decoder's abnormal probability ``[B, S, S]`` (taps weighted as it says)."""
        size = (self.image_size, self.image_size)
        p = self.decoder.abnormal_map(taps, self.text_embeddings)
        return patches_to_image(p, self.encoder.grid_size, size)

    def text_map(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """The decoder's map ``[B, S, S]``, on the references' scale when one was measured."""
        p = self.decoder_map(taps)
        if self.text_scale is None:
            return p
        return 1.0 - torch.exp(-LN2 * p / self.text_scale)

    def fuse(self, text_map: torch.Tensor | None, memory_map: torch.Tensor | None) -> torch.Tensor:
        if memory_map is None or self.fusion == "text":
            assert text_map is not None
            return text_map
        if self.fusion == "memory" or text_map is None:
            return memory_map
        w = self.memory_weight
        return (1.0 - w) * text_map + w * memory_map

    def maps(self, x: torch.Tensor) -> DetectorMaps:
        """All intermediate maps of one forward pass (for tests, training and explanations)."""
        taps = self.encoder(x)  # the only part that may run in reduced precision
        with fp32(x):
            taps = [t.float() for t in taps]
            text_map = self.text_map(taps) if self.uses_decoder else None
            bank = self.memory_bank
            memory_map = self.upsample(bank(taps)) if bank is not None else None
            fused = self.fuse(text_map, memory_map)
            amap = self.smooth(fused).clamp(0.0, 1.0)
            return DetectorMaps(text_map, memory_map, fused, amap, amap.flatten(1).amax(dim=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.maps(x)
        return m.anomaly_map, m.score
