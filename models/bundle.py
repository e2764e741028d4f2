"""Model bundles: a folder with ``recipe.yaml`` and the tensors of one product's detector.

``create_bundle`` makes one from an architecture, a product noun and optional normal
reference images; ``load_detector`` rebuilds the detector from it without any network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from models import clip_loader
from models.decoder import TextDecoder
from models.detector import BatteryDetector
from models.encoder import TapEncoder
from models.memory_bank import MemoryBank
from models.preprocess import preprocess
from models.prompts import PromptSet, encode_prompts
from models.recipe import (
    CHECKPOINT_FILE,
    DECODER_FILE,
    ENCODER_FILE,
    MEMORY_FILE,
    TEXT_FILE,
    Prompts,
    Recipe,
    file_sha256,
    load_recipe,
    save_recipe,
)


def _make_decoder(encoder: TapEncoder, embed_dim: int) -> TextDecoder:
    visual = encoder.visual
    return TextDecoder(
        encoder.width, embed_dim, len(encoder.taps), norm=visual.ln_post, init_proj=visual.proj
    )


@torch.no_grad()
def encode_references(
    encoder: TapEncoder,
    images: Sequence[np.ndarray],
    bit_depth: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> MemoryBank | None:
    """Memory bank from normal reference frames (None when there are none)."""
    if not images:
        return None
    batches = []
    steps = range(0, len(images), batch_size)
    for i in tqdm(steps, desc="references", unit="batch", disable=not progress):
        chunk = images[i : i + batch_size]
        x = np.stack([preprocess(im, encoder.image_size, bit_depth) for im in chunk])
        batches.append(encoder(torch.from_numpy(x)))
    return MemoryBank.from_taps(batches)


def build_detector(
    arch: str,
    product: str = "battery",
    weights: str | Path | None = None,
    reference_images: Sequence[np.ndarray] = (),
    seed: int = 0,
    prompts: PromptSet | None = None,
    bit_depth: int | None = None,
    progress: bool = False,
) -> BatteryDetector:
    """A detector in memory, straight from an architecture (and weights for ViT-H)."""
    clip = clip_loader.create_clip(arch, weights=weights, seed=seed)
    prompts = prompts or PromptSet(product)
    text = encode_prompts(clip, clip_loader.tokenizer_for(arch), prompts)
    encoder = TapEncoder(clip.visual)
    decoder = _make_decoder(encoder, text.shape[1])
    bank = encode_references(encoder, reference_images, bit_depth, progress=progress)
    return BatteryDetector(encoder, decoder, text, bank).eval()


def save_tensors(bundle: str | Path, detector: BatteryDetector, encoder: bool = False) -> None:
    """Write the detector's decoder, text embeddings, memory bank (and encoder) into a bundle."""
    bundle = Path(bundle)
    bundle.mkdir(parents=True, exist_ok=True)

    def _save(tensors: dict[str, torch.Tensor], name: str) -> None:
        tmp = bundle / f".{name}.tmp"
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        tmp.replace(bundle / name)

    if encoder:
        _save(detector.encoder.visual.state_dict(), ENCODER_FILE)
    _save(detector.decoder.state_dict(), DECODER_FILE)
    _save({"text": detector.text_embeddings}, TEXT_FILE)
    if detector.memory_bank is not None:
        _save({"features": detector.memory_bank.features}, MEMORY_FILE)
    elif (bundle / MEMORY_FILE).exists():
        (bundle / MEMORY_FILE).unlink()


def create_bundle(
    out: str | Path,
    arch: str,
    product: str,
    weights: str | Path | None = None,
    reference_images: Sequence[np.ndarray] = (),
    seed: int = 0,
    bit_depth: int | None = None,
    pixel_pitch_mm: float | None = None,
    progress: bool = False,
) -> Recipe:
    """Make a bundle folder for one product; returns its recipe.

    Overwriting a bundle also deletes its training checkpoint, which belongs to the old
    tensors (resuming from it would skip training the new ones).

    Example:
        >>> import tempfile
        >>> recipe = create_bundle(tempfile.mkdtemp(), "tiny", "pouch cell")
        >>> recipe.taps
        [0, 1, 2, 3]
    """
    prompts = PromptSet(product)
    det = build_detector(
        arch, product, weights, reference_images, seed, prompts, bit_depth, progress
    )
    out = Path(out)
    (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    save_tensors(out, det, encoder=True)
    recipe = Recipe(
        arch=arch,
        product=product,
        input_size=det.image_size,
        patch_grid=det.encoder.grid_size[0],
        taps=det.encoder.taps,
        prompts=Prompts(
            normal_states=prompts.normal_states,
            abnormal_states=prompts.abnormal_states,
            templates=prompts.templates,
        ),
        bit_depth=bit_depth,
        pixel_pitch_mm=pixel_pitch_mm,
        n_reference_images=len(reference_images),
        encoder_sha256=file_sha256(out / ENCODER_FILE),
    )
    save_recipe(out, recipe)
    return recipe


def load_detector(bundle: str | Path, device: str | torch.device = "cpu") -> BatteryDetector:
    """Rebuild a bundle's detector (eval mode, on ``device``) from its files alone."""
    bundle = Path(bundle)
    recipe = load_recipe(bundle)
    visual = clip_loader.create_visual(recipe.arch)
    visual.load_state_dict(load_file(bundle / ENCODER_FILE, device=str(device)), assign=True)
    encoder = TapEncoder(visual, recipe.taps)
    text = load_file(bundle / TEXT_FILE, device=str(device))["text"]
    with torch.device("meta"):
        decoder = TextDecoder(encoder.width, text.shape[1], len(recipe.taps))
    decoder.load_state_dict(load_file(bundle / DECODER_FILE, device=str(device)), assign=True)
    decoder.norm.requires_grad_(False)
    bank = None
    if (bundle / MEMORY_FILE).is_file():
        bank = MemoryBank(load_file(bundle / MEMORY_FILE, device=str(device))["features"])
    det = BatteryDetector(
        encoder,
        decoder,
        text,
        bank,
        fusion=recipe.fusion,
        memory_weight=recipe.memory_weight,
        smoothing_sigma=recipe.smoothing_sigma,
    )
    return det.to(device).eval()
