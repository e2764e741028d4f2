"""Build OpenCLIP models from local files only; never from the network.

Two architectures are known: ``vit-h-14`` (OpenCLIP ViT-H-14, the paper's encoder, weights
from a local checkpoint) and ``tiny`` (the same classes with 4 blocks of width 96, random
weights, for tests and the demo).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.model import _build_vision_tower

from models.errors import MissingWeightsError

CONFIG_DIR = Path(__file__).parent / "configs"
WEIGHTS_DIR_ENV = "INSPECTOR_WEIGHTS_DIR"
VIT_H_CHECKPOINT = "open_clip_pytorch_model.bin"
VIT_H_SOURCE = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

open_clip.add_model_config(CONFIG_DIR)


@dataclass(frozen=True)
class ArchSpec:
    """How one architecture name maps onto OpenCLIP."""

    name: str
    openclip_name: str
    needs_weights: bool


OPENCLIP_ARCHS: dict[str, ArchSpec] = {
    "tiny": ArchSpec("tiny", "battery-tiny", needs_weights=False),
    "vit-h-14": ArchSpec("vit-h-14", "ViT-H-14", needs_weights=True),
}


def arch_spec(arch: str) -> ArchSpec:
    """Look up an architecture by name, with the valid names in the error."""
    try:
        return OPENCLIP_ARCHS[arch]
    except KeyError:
        known = sorted(OPENCLIP_ARCHS)
        raise ValueError(f"unknown architecture {arch!r}; choose one of {known}") from None


def default_weights_path(arch: str) -> Path:
    """Where a checkpoint is looked for when ``--weights`` is not given."""
    root = Path(os.environ.get(WEIGHTS_DIR_ENV, "~/.local/share/battery-inspector/weights"))
    return root.expanduser() / arch_spec(arch).openclip_name / VIT_H_CHECKPOINT


def model_config(arch: str) -> dict:
    """The OpenCLIP config dict (embed_dim, vision_cfg, text_cfg) of an architecture."""
    cfg = open_clip.get_model_config(arch_spec(arch).openclip_name)
    if cfg is None:
        raise ValueError(f"OpenCLIP has no config named {arch_spec(arch).openclip_name!r}")
    return cfg


def create_clip(arch: str, weights: str | Path | None = None, seed: int = 0) -> torch.nn.Module:
    """Create the full OpenCLIP model (image and text towers), in eval mode.

    Args:
        arch: ``"tiny"`` or ``"vit-h-14"``.
        weights: a local OpenCLIP state dict (``.bin``/``.pt``/``.safetensors``). Required for
            ``vit-h-14`` (looked for under ``$INSPECTOR_WEIGHTS_DIR`` when omitted); optional
            for ``tiny``, which otherwise gets random weights drawn from ``seed``.
        seed: seed for the random initialisation.

    Raises:
        MissingWeightsError: the architecture needs weights and the file does not exist.

    Example:
        >>> model = create_clip("tiny", seed=0)
        >>> model.visual.transformer.layers
        4
    """
    spec = arch_spec(arch)
    if weights is None and spec.needs_weights:
        weights = default_weights_path(arch)
    if weights is not None and not Path(weights).is_file():
        raise MissingWeightsError(
            f"{spec.openclip_name} weights not found: provide {Path(weights)} "
            f"(the {VIT_H_CHECKPOINT} of {VIT_H_SOURCE}) or pass --weights PATH"
        )
    torch.manual_seed(seed)
    logging.disable(logging.WARNING)  # OpenCLIP warns that no pretrained tag was used
    try:
        model = open_clip.create_model(
            spec.openclip_name, pretrained=None, pretrained_text=False, load_weights=False
        )
    finally:
        logging.disable(logging.NOTSET)
    if weights is not None:
        open_clip.load_checkpoint(model, str(weights), strict=True)
    return model.eval()


def create_visual(arch: str) -> torch.nn.Module:
    """An uninitialised image tower (on the meta device) to load a bundle's encoder into."""
    cfg = model_config(arch)
    with torch.device("meta"):
        visual = _build_vision_tower(
            cfg["embed_dim"], cfg["vision_cfg"], cfg.get("quick_gelu", False)
        )
    return visual


def tokenizer_for(arch: str):
    """The (offline) tokenizer of an architecture's text tower."""
    return open_clip.get_tokenizer(arch_spec(arch).openclip_name)
