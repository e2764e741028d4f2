"""The decoder: per-tap projection of patch tokens into the text space, matched to prompts."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

LOGIT_SCALE = 100.0  # temperature 0.01


class TextDecoder(nn.Module):
    """One linear projection per tap (width -> embed_dim), then cosine logits vs. the prompts.

    The tokens first pass the encoder's frozen final LayerNorm; the projections start from the
    encoder's own image projection, so an untrained decoder is CLIP's zero-shot patch matcher.
    Only the projections train.

    Example:
        >>> dec = TextDecoder(width=96, embed_dim=64, n_taps=4)
        >>> taps = [torch.randn(2, 256, 96)] * 4
        >>> text = F.normalize(torch.randn(2, 64), dim=-1)
        >>> [tuple(m.shape) for m in dec(taps, text)][0]
        (2, 256, 2)
    """

    def __init__(
        self,
        width: int,
        embed_dim: int,
        n_taps: int,
        norm: nn.Module | None = None,
        init_proj: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.norm = copy.deepcopy(norm) if norm is not None else nn.LayerNorm(width)
        self.norm.requires_grad_(False)
        self.proj = nn.ModuleList(nn.Linear(width, embed_dim) for _ in range(n_taps))
        if init_proj is not None:
            with torch.no_grad():
                for lin in self.proj:
                    lin.weight.copy_(init_proj.T)
                    lin.bias.zero_()

    def forward(self, taps: list[torch.Tensor], text: torch.Tensor) -> list[torch.Tensor]:
        """Logits ``[B, N, 2]`` per tap (channel 1 = abnormal)."""
        out = []
        for tokens, lin in zip(taps, self.proj, strict=True):
            feats = F.normalize(lin(self.norm(tokens)), dim=-1)
            out.append(LOGIT_SCALE * feats @ text.T)
        return out

    def abnormal_maps(self, taps: list[torch.Tensor], text: torch.Tensor) -> torch.Tensor:
        """Abnormal-class probability per tap and patch, ``[B, T, N]``."""
        return torch.stack([lg.softmax(dim=-1)[..., 1] for lg in self(taps, text)], dim=1)
