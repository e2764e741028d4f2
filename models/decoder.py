"""The decoder: per-tap projection of patch features into the class space, matched to prompts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.numerics import fp32, unit

LOGIT_SCALE = 100.0  # temperature 0.01


def abnormal_probability(logits: torch.Tensor) -> torch.Tensor:
    """Two-class patch logits ``[..., 2]`` -> abnormal probability ``[...]`` (fp32 softmax)."""
    return logits.float().softmax(dim=-1)[..., 1]


def patches_to_image(values: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]):
    """Patch values ``[B, N]`` (row-major on ``grid``) -> bilinear ``[B, H, W]``.

    Training and inference both softmax per patch first and upsample the probability with
    this, so the map the loss sees is the map the station computes.
    """
    x = values.reshape(-1, 1, grid[0], grid[1])
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[:, 0]


class TextDecoder(nn.Module):
    """One frozen LayerNorm and one linear projection per tap, then cosine logits vs. the
    normal/abnormal class embeddings.

    For OpenCLIP the norms copy the encoder's final LayerNorm and the projections start from
    its image projection (CLIP's zero-shot patch matcher before training); for a CNN they
    start plain and only training gives them meaning. Only the projections train.

    Example:
        >>> dec = TextDecoder(widths=[40, 112], embed_dim=64)
        >>> taps = [torch.randn(2, 784, 40), torch.randn(2, 784, 112)]
        >>> text = F.normalize(torch.randn(2, 64), dim=-1)
        >>> [tuple(m.shape) for m in dec(taps, text)][1]
        (2, 784, 2)
    """

    def __init__(
        self,
        widths: list[int],
        embed_dim: int,
        norm: nn.LayerNorm | None = None,
        init_proj: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(w) for w in widths)
        self.proj = nn.ModuleList(nn.Linear(w, embed_dim) for w in widths)
        with torch.no_grad():
            for ln, lin in zip(self.norms, self.proj, strict=True):
                if norm is not None:
                    ln.load_state_dict(norm.state_dict())
                if init_proj is not None:
                    lin.weight.copy_(init_proj.T)
                    lin.bias.zero_()
        self.norms.requires_grad_(False)

    def forward(self, taps: list[torch.Tensor], text: torch.Tensor) -> list[torch.Tensor]:
        """Logits ``[B, N, 2]`` per tap (channel 1 = abnormal), in fp32 (``models.numerics``)."""
        out = []
        for tokens, ln, lin in zip(taps, self.norms, self.proj, strict=True):
            with fp32(tokens):  # a small head: the whole of it stays fp32 under autocast
                feats = unit(lin(ln(tokens.float())))
                out.append(LOGIT_SCALE * feats @ text.float().T)
        return out

    def abnormal_maps(self, taps: list[torch.Tensor], text: torch.Tensor) -> torch.Tensor:
        """Abnormal-class probability per tap and patch, ``[B, T, N]``."""
        return torch.stack([abnormal_probability(lg) for lg in self(taps, text)], dim=1)
