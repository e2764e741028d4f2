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

    Only the last tap of a CLIP ViT is aligned with the text space through ``ln_post`` and
    ``visual.proj``; the residual stream of the earlier taps is not. So for OpenCLIP the last
    tap starts from the encoder's final LayerNorm and image projection (CLIP's zero-shot patch
    matcher), the other taps start as AnomalyGPT's do (default-initialised linear layers, here
    on plainly standardised tokens, since raw ViT tokens carry outlier channels), and until
    training the map is the last tap's alone (``tap_weights``). Training turns every tap on
    (``use_all_taps``). For a CNN all taps start plain and only training gives them meaning.
    Only the projections train.

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
        zero_shot = norm is not None or init_proj is not None
        with torch.no_grad():
            if norm is not None:
                self.norms[-1].load_state_dict(norm.state_dict())
            if init_proj is not None:
                self.proj[-1].weight.copy_(init_proj.T)
                self.proj[-1].bias.zero_()
        self.norms.requires_grad_(False)
        weights = torch.ones(len(widths))
        if zero_shot:  # untrained: the one tap that means something
            weights = torch.zeros(len(widths))
            weights[-1] = 1.0
        self.register_buffer("tap_weights", weights)

    def use_all_taps(self) -> None:
        """Score with every tap (what training teaches them)."""
        self.tap_weights.fill_(1.0)

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

    def abnormal_map(self, taps: list[torch.Tensor], text: torch.Tensor) -> torch.Tensor:
        """The taps' probabilities averaged with ``tap_weights``, ``[B, N]``."""
        w = self.tap_weights.float()
        return (self.abnormal_maps(taps, text) * w[:, None]).sum(dim=1) / w.sum()
