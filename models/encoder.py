"""Image encoder 1: an OpenCLIP ViT whose intermediate block outputs ("taps") are read out."""

from __future__ import annotations

import torch
from torch import nn


def tap_indices(n_layers: int) -> list[int]:
    """0-based block indices at depth L/4, L/2, 3L/4 and L (7, 15, 23, 31 for 32 blocks)."""
    if n_layers < 4 or n_layers % 4:
        raise ValueError(f"need a multiple of 4 blocks to tap at quarters, got {n_layers}")
    return [n_layers * q // 4 - 1 for q in (1, 2, 3, 4)]


class TapEncoder(nn.Module):
    """Runs an OpenCLIP ``VisionTransformer`` and returns the patch tokens of the tapped blocks.

    The CLS token is dropped from the taps; ``global_embedding`` turns the last tap's CLS into
    the CLIP image embedding (used by the chat's projection).

    Example:
        >>> from models.clip_loader import create_clip
        >>> enc = TapEncoder(create_clip("tiny").visual)
        >>> [t.shape[1:] for t in enc(torch.zeros(1, 3, 224, 224))]  # doctest: +ELLIPSIS
        [torch.Size([256, 96]), ...]
    """

    def __init__(self, visual: nn.Module, taps: list[int] | None = None) -> None:
        super().__init__()
        if not getattr(visual.transformer, "batch_first", True):
            raise ValueError("the vision transformer must run batch-first")
        self.visual = visual
        self.taps = list(taps) if taps is not None else tap_indices(visual.transformer.layers)
        self.width = visual.transformer.width
        grid = visual.grid_size
        self.grid_size: tuple[int, int] = (int(grid[0]), int(grid[1]))

    @property
    def image_size(self) -> int:
        return int(self.visual.image_size[0])

    def forward_tokens(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Full token sequences ``[B, 1 + N, width]`` (CLS first) at each tap."""
        v = self.visual
        x = v.conv1(x)
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.ln_pre(x)
        out = []
        for i, block in enumerate(v.transformer.resblocks[: max(self.taps) + 1]):
            x = block(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Patch tokens ``[B, N, width]`` at each tap, CLS dropped."""
        return [t[:, 1:, :] for t in self.forward_tokens(x)]

    def global_embedding(self, last_tokens: torch.Tensor) -> torch.Tensor:
        """CLIP image embedding from the final block's tokens (valid when the last tap is L)."""
        pooled = self.visual.ln_post(last_tokens[:, 0])
        return pooled @ self.visual.proj
