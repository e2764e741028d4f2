"""The OpenCLIP family: ``vit-h-14`` (the paper's encoder) and ``tiny`` (tests only).

Taps are the patch tokens after the blocks at depth L/4, L/2, 3L/4 and L (CLS dropped); the
class embeddings come from the text tower and the prompt ensemble.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models.backbones import clip_loader
from models.backbones.base import Backbone
from models.prompts import PromptSet, encode_prompts

# OpenCLIP (OpenAI) normalisation
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def tap_indices(n_layers: int) -> list[int]:
    """0-based block indices at depth L/4, L/2, 3L/4 and L (7, 15, 23, 31 for 32 blocks)."""
    if n_layers < 4 or n_layers % 4:
        raise ValueError(f"need a multiple of 4 blocks to tap at quarters, got {n_layers}")
    return [n_layers * q // 4 - 1 for q in (1, 2, 3, 4)]


class OpenClipBackbone(Backbone):
    """Runs an OpenCLIP ``VisionTransformer`` and returns the patch tokens of the tapped blocks.

    Example:
        >>> enc = OpenClipBackbone("tiny", clip_loader.create_clip("tiny").visual)
        >>> [tuple(t.shape[1:]) for t in enc(torch.zeros(1, 3, 224, 224))][0]
        (256, 96)
    """

    has_text_tower = True
    unit_taps = True  # raw residual-stream tokens carry outlier channels

    def __init__(self, arch: str, visual: nn.Module, taps: list[int] | None = None) -> None:
        super().__init__(CLIP_MEAN, CLIP_STD)
        if not getattr(visual.transformer, "batch_first", True):
            raise ValueError("the vision transformer must run batch-first")
        self.arch = arch
        self.visual = visual
        self.taps = list(taps) if taps is not None else tap_indices(visual.transformer.layers)
        width = visual.transformer.width
        self.tap_widths = [width] * len(self.taps)
        grid = visual.grid_size
        self.grid_size = (int(grid[0]), int(grid[1]))
        self.image_size = int(visual.image_size[0])
        self.embed_dim = int(visual.proj.shape[1])

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

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [t[:, 1:, :] for t in self.forward_tokens(x)]

    def global_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)  # CLIP's image embedding (ln_post(CLS) @ proj)

    def decoder_start(self) -> tuple[nn.LayerNorm | None, torch.Tensor | None]:
        return self.visual.ln_post, self.visual.proj  # CLIP's zero-shot patch matcher


def create(
    arch: str,
    weights: str | Path | None = None,
    seed: int = 0,
    image_size: int | None = None,
    prompts: PromptSet | None = None,
) -> tuple[OpenClipBackbone, torch.Tensor]:
    """The backbone with its weights, and the prompt ensemble's ``[2, D]`` text embeddings."""
    clip = clip_loader.create_clip(arch, weights=weights, seed=seed)
    if image_size not in (None, int(clip.visual.image_size[0])):
        raise ValueError(f"{arch} runs at {clip.visual.image_size[0]} px only, not {image_size}")
    text = encode_prompts(clip, clip_loader.tokenizer_for(arch), prompts or PromptSet("battery"))
    return OpenClipBackbone(arch, clip.visual).eval(), text


def skeleton(arch: str, image_size: int, taps: list[int]) -> OpenClipBackbone:
    """An uninitialised backbone (meta tensors) to load a bundle's weights into."""
    return OpenClipBackbone(arch, clip_loader.create_visual(arch), taps)
