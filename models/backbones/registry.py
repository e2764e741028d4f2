"""Architecture names -> backbone families. Adding a backbone: a module in this folder and a row.

Example:
    >>> sorted(ARCHS)[:2]
    ['effnet-lite0', 'effnet-lite1']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.backbones import efficientnet, openclip
from models.backbones.base import Backbone
from models.prompts import PromptSet

DEFAULT_ARCH = "effnet-lite0"  # the best measured pretrained backbone (bench/RESULTS.md)


@dataclass(frozen=True)
class BackboneFamily:
    """How to build one architecture: with weights (``create``) or empty (``skeleton``)."""

    create: Callable[..., tuple[Backbone, torch.Tensor]]
    skeleton: Callable[[str, int, list[int]], Backbone]
    default_size: int
    pretrained: bool  # False: random weights, fit for tests only
    summary: str


_CLIP = (openclip.create, openclip.skeleton)
_EFFNET = (efficientnet.create, efficientnet.skeleton)
ARCHS: dict[str, BackboneFamily] = {
    "effnet-lite0": BackboneFamily(*_EFFNET, 224, True, "EfficientNet-Lite0, ImageNet (default)"),
    "effnet-lite1": BackboneFamily(*_EFFNET, 224, True, "EfficientNet-Lite1, ImageNet"),
    "effnet-lite2": BackboneFamily(*_EFFNET, 224, True, "EfficientNet-Lite2, ImageNet"),
    "vit-h-14": BackboneFamily(*_CLIP, 224, True, "OpenCLIP ViT-H-14 (local checkpoint)"),
    "tiny": BackboneFamily(*_CLIP, 224, False, "random weights: for tests only, detects nothing"),
}


def family(arch: str) -> BackboneFamily:
    """Look up an architecture, with the valid names in the error."""
    try:
        return ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHS)}") from None


def create_backbone(
    arch: str,
    weights: str | Path | None = None,
    seed: int = 0,
    image_size: int | None = None,
    prompts: PromptSet | None = None,
) -> tuple[Backbone, torch.Tensor]:
    """A backbone with its weights, and its ``[2, D]`` normal/abnormal class embeddings; at the
    family's measured default input size unless ``image_size`` is given."""
    fam = family(arch)
    return fam.create(arch, weights, seed, image_size or fam.default_size, prompts)


def empty_backbone(arch: str, image_size: int, taps: list[int]) -> Backbone:
    """A backbone of the right shape, to load a bundle's ``encoder.safetensors`` into."""
    return family(arch).skeleton(arch, image_size, taps)
