"""Few-shot memory bank: tap features of k normal reference images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MemoryBank(nn.Module):
    """Per query patch, ``1 - max cosine`` to any reference patch at the same tap.

    The bank is a buffer ``[T, M, C]`` of L2-normalised features (M = k images x N patches), so
    it travels with the module into ``state_dict`` and the ONNX graph.

    Example:
        >>> taps = [torch.randn(1, 256, 96) for _ in range(4)]
        >>> bank = MemoryBank.from_taps([taps])
        >>> float(bank(taps).abs().max()) < 1e-5  # the references themselves score 0
        True
    """

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__()
        if features.ndim != 3 or features.shape[1] == 0:
            raise ValueError(
                f"memory bank needs features [taps, M>0, C], got {tuple(features.shape)}"
            )
        self.register_buffer("features", F.normalize(features, dim=-1))

    @classmethod
    def from_taps(cls, batches: list[list[torch.Tensor]]) -> MemoryBank:
        """Build from encoder outputs: a list of batches, each a list of ``[B, N, C]`` taps."""
        n_taps = len(batches[0])
        per_tap = [torch.cat([b[t].flatten(0, 1) for b in batches]) for t in range(n_taps)]
        return cls(torch.stack(per_tap))

    @property
    def n_patches(self) -> int:
        return int(self.features.shape[1])

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """Distance ``[B, T, N]`` of every query patch to its nearest reference patch."""
        out = []
        for t, tokens in enumerate(taps):
            sim = F.normalize(tokens, dim=-1) @ self.features[t].T
            out.append(1.0 - sim.amax(dim=-1))
        return torch.stack(out, dim=1)
