"""The one interface every image backbone implements.

A backbone takes images in ``[0, 1]`` (``[B, 3, S, S]``, RGB), applies its own normalisation
(so preprocessing and exported graphs need not know the family) and returns its taps: a list
of ``[B, N, C_t]`` patch-feature grids, all on one ``grid_size`` patch grid, row-major.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import nn

from models.numerics import unit


class Backbone(nn.Module, ABC):
    """Frozen image features for the detector, the memory bank and the chat.

    Subclasses set ``arch``, ``image_size``, ``grid_size``, ``tap_widths`` and ``embed_dim``
    and implement ``features``. ``has_text_tower`` says whether the class embeddings come
    from a text encoder (OpenCLIP) or are learned by training (CNNs).
    """

    arch: str
    image_size: int
    grid_size: tuple[int, int]
    taps: list[int]  # which blocks/stages are tapped (recorded in the recipe)
    tap_widths: list[int]
    embed_dim: int  # width of the global embedding (the chat's image token) and class space
    has_text_tower: bool = False
    unit_taps: bool = False  # the memory bank compares each tap at unit length (ViT outliers)

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` RGB -> the input statistics the weights were trained with."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    @abstractmethod
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Taps ``[B, N, C_t]`` of normalised images."""

    @abstractmethod
    def global_features(self, x: torch.Tensor) -> torch.Tensor:
        """One ``[B, embed_dim]`` embedding per normalised image (the chat's image token)."""

    def decoder_start(self) -> tuple[nn.LayerNorm | None, torch.Tensor | None]:
        """A LayerNorm and an image projection the decoder may start from (both None: start
        plain; only training gives a decoder on this backbone meaning)."""
        return None, None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Taps ``[B, N, C_t]`` of ``[0, 1]`` images."""
        return self.features(self.normalize(x))

    def global_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The global image embedding of ``[0, 1]`` images, L2-normalised."""
        return unit(self.global_features(self.normalize(x)))
