"""Model bundles: a folder with ``recipe.yaml`` and the tensors of one product's detector.

``create_bundle`` makes one from an architecture (a backbone of ``models.backbones``), a
product noun and optional normal reference images; ``load_detector`` rebuilds the detector
from it without any network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from models.backbones.base import Backbone
from models.backbones.registry import DEFAULT_ARCH, create_backbone, empty_backbone
from models.bundle_files import (
    CHECKPOINT_FILE,
    DECODER_FILE,
    ENCODER_FILE,
    MEMORY_FILE,
    TEXT_FILE,
)
from models.decoder import TextDecoder
from models.detector import BatteryDetector
from models.memory_bank import CoresetSize, MemoryBank, embed
from models.preprocess import preprocess
from models.prompts import PromptSet
from models.recipe import (
    Coreset,
    Prompts,
    Recipe,
    Roi,
    file_sha256,
    load_recipe,
    save_recipe,
)

# new banks take 3/4 of each image's median patch distance off its patches
# (models/memory_bank.py; measured in bench/RESULTS.md "Accuracy"); older recipes say 0
DEFAULT_MEDIAN_WEIGHT = 0.75

# reference frame, model input side -> the model inputs it is inspected as (ROI tiles); the
# inspector passes one (inspector.vision.tiling.cut_frame), since models/ must not import inspector
Tiler = Callable[[np.ndarray, int], list[np.ndarray]]


def _make_decoder(encoder: Backbone, embed_dim: int) -> TextDecoder:
    return TextDecoder(encoder.tap_widths, embed_dim, *encoder.decoder_start())

@torch.no_grad()
def encode_references(
    encoder: Backbone,
    images: Sequence[np.ndarray],
    bit_depth: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
    coreset: CoresetSize | None = None,
    median_weight: float = DEFAULT_MEDIAN_WEIGHT,
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
    return MemoryBank.from_taps(
        batches, encoder.unit_taps, coreset, grid=encoder.grid_size,
        median_weight=median_weight,
    )


def default_fusion(encoder: Backbone, has_bank: bool) -> str:
    """An untrained CNN decoder means nothing: such bundles use the memory bank alone."""
    if has_bank and not encoder.has_text_tower:
        return "memory"
    return "mean"


def build_detector(
    arch: str = DEFAULT_ARCH,
    product: str = "battery",
    weights: str | Path | None = None,
    reference_images: Sequence[np.ndarray] = (),
    seed: int = 0,
    prompts: PromptSet | None = None,
    bit_depth: int | None = None,
    progress: bool = False,
    image_size: int | None = None,
    coreset: CoresetSize | None = None,
    tiler: Tiler | None = None,
    median_weight: float = DEFAULT_MEDIAN_WEIGHT,
) -> BatteryDetector:
    """A detector in memory, straight from an architecture (and weights for ViT-H).

    With a ``tiler`` the memory bank holds the reference frames' tiles, cut as inspection
    cuts frames (ROI at the inspection pitch), so it matches what it will be compared with.
    """
    prompts = prompts or PromptSet(product)
    encoder, text = create_backbone(arch, weights, seed, image_size, prompts)
    decoder = _make_decoder(encoder, text.shape[1])
    if tiler is not None:
        reference_images = [t for im in reference_images for t in tiler(im, encoder.image_size)]
    bank = encode_references(
        encoder, reference_images, bit_depth, progress=progress, coreset=coreset,
        median_weight=median_weight,
    )
    fusion = default_fusion(encoder, bank is not None)
    detector = BatteryDetector(encoder, decoder, text, bank, fusion=fusion).eval()
    if bank is not None and fusion != "memory":  # both maps on the references' scale
        detector.text_scale = text_scale(detector, reference_images, bit_depth)
    return detector


@torch.no_grad()
def text_scale(detector: BatteryDetector, images: Sequence[np.ndarray], bit_depth) -> float:
    """The decoder map's peak on normal ``images``: the scale that puts it where the bank's
    leave-one-out scale puts the memory map (0.5 = the most abnormal normal patch seen)."""
    peak = 0.0
    for i in range(0, len(images), 8):
        x = np.stack([preprocess(im, detector.image_size, bit_depth) for im in images[i : i + 8]])
        taps = detector.encoder(torch.from_numpy(x).to(detector.text_embeddings.device))
        peak = max(peak, float(detector.decoder_map(taps).max()))
    return max(peak, 1e-6)


def save_tensors(bundle: str | Path, detector: BatteryDetector, encoder: bool = False) -> None:
    """Write the detector's decoder, text embeddings, memory bank (and encoder) into a bundle."""
    bundle = Path(bundle)
    bundle.mkdir(parents=True, exist_ok=True)

    def _save(tensors: dict[str, torch.Tensor], name: str) -> None:
        tmp = bundle / f".{name}.tmp"
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        tmp.replace(bundle / name)

    if encoder:
        _save(detector.encoder.state_dict(), ENCODER_FILE)
    _save(detector.decoder.state_dict(), DECODER_FILE)
    _save({"text": detector.text_embeddings}, TEXT_FILE)
    if detector.memory_bank is not None:
        bank = detector.memory_bank
        _save({"features": bank.features, "scale": bank.scale}, MEMORY_FILE)
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
    image_size: int | None = None,
    coreset: CoresetSize | None = None,
    roi: Roi | None = None,
    inspect_mm_per_px: float | None = None,
    tile_overlap: float = 0.25,
    tiler: Tiler | None = None,
    prompts: PromptSet | None = None,
    median_weight: float = DEFAULT_MEDIAN_WEIGHT,
) -> Recipe:
    """Make a bundle folder for one product; returns its recipe.

    ``prompts`` defaults to the paper's ensemble (``PromptSet.with_extra_states`` adds
    WinCLIP's extra normal words); the recipe records the one used.

    Overwriting a bundle also deletes its training checkpoint, which belongs to the old
    tensors (resuming from it would skip training the new ones). ``roi``,
    ``inspect_mm_per_px`` and ``tile_overlap`` are recorded in the recipe; ``tiler`` must cut
    the references the same way (see ``build_detector``).

    Example:
        >>> import tempfile
        >>> recipe = create_bundle(tempfile.mkdtemp(), "tiny", "pouch cell")
        >>> recipe.taps
        [0, 1, 2, 3]
    """
    prompts = prompts or PromptSet(product)
    coreset = coreset or CoresetSize()
    per_frame: list[int] = []  # model inputs each reference frame gave

    def counted(image: np.ndarray, side: int) -> list[np.ndarray]:
        tiles = tiler(image, side) if tiler is not None else [image]
        per_frame.append(len(tiles))
        return tiles

    det = build_detector(
        arch, product, weights, reference_images, seed, prompts, bit_depth, progress,
        image_size, coreset, counted, median_weight,
    )
    n_inputs = sum(per_frame)
    out = Path(out)
    (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    save_tensors(out, det, encoder=True)
    recipe = Recipe(
        arch=arch,
        product=product,
        input_size=det.image_size,
        patch_grid=det.encoder.grid_size[0],
        taps=det.encoder.taps,
        fusion=det.fusion,
        median_weight=det.memory_bank.median_weight if det.memory_bank is not None else 0.0,
        coreset=_coreset_record(det, coreset, n_inputs),
        prompts=Prompts(
            normal_states=prompts.normal_states,
            abnormal_states=prompts.abnormal_states,
            templates=prompts.templates,
        ),
        bit_depth=bit_depth,
        pixel_pitch_mm=pixel_pitch_mm,
        roi=roi,
        inspect_mm_per_px=inspect_mm_per_px,
        tile_overlap=tile_overlap,
        text_scale=det.text_scale,
        n_reference_images=len(reference_images),
        encoder_sha256=file_sha256(out / ENCODER_FILE),
    )
    save_recipe(out, recipe)
    return recipe


def _coreset_record(det: BatteryDetector, coreset: CoresetSize, n_inputs: int) -> Coreset:
    """The recipe's record of the bank's coreset: its bounds, and how many patches it kept of
    how many the ``n_inputs`` reference inputs gave."""
    grid = det.encoder.grid_size
    return Coreset(
        fraction=coreset.fraction,
        minimum=coreset.minimum,
        maximum=coreset.maximum,
        kept=det.memory_bank.n_patches if det.memory_bank is not None else 0,
        of_total=n_inputs * grid[0] * grid[1],
    )


@torch.no_grad()
def add_normals(
    bundle: str | Path, images: Sequence[np.ndarray], batch_size: int = 8, progress: bool = False
) -> Recipe:
    """Add normal images (e.g. confirmed false rejects) to a bundle's memory bank, in place.

    Their patches join the bank and the coreset is chosen again within the recipe's bounds;
    the recipe's coreset counts and reference count follow. Thresholds are left as they are:
    recalibrate afterwards. Returns the updated recipe.

    Raises:
        ValueError: no images, or the bundle has no memory bank.
    """
    if not images:
        raise ValueError("no normal images to add")
    bundle = Path(bundle)
    recipe = load_recipe(bundle)
    det = load_detector(bundle)
    bank = det.memory_bank
    if bank is None:
        raise ValueError(
            f"{bundle} has no memory bank to add to: make it with 'inspector bundle create "
            "--reference-dir'"
        )
    feats = []
    steps = range(0, len(images), batch_size)
    for i in tqdm(steps, desc="normals", unit="batch", disable=not progress):
        x = np.stack(
            [preprocess(im, det.image_size, recipe.bit_depth) for im in images[i : i + batch_size]]
        )
        feats.append(embed(det.encoder(torch.from_numpy(x)), bank.normalize_taps))
    c = recipe.coreset
    det.memory_bank = bank.extended(
        torch.cat(feats), CoresetSize(c.fraction, c.minimum, c.maximum), c.of_total
    )
    save_tensors(bundle, det)
    n_new = len(images) * feats[0].shape[1]
    recipe.coreset = c.model_copy(
        update={"kept": det.memory_bank.n_patches, "of_total": c.of_total + n_new}
    )
    recipe.n_reference_images += len(images)
    save_recipe(bundle, recipe)
    return recipe


def load_detector(bundle: str | Path, device: str | torch.device = "cpu") -> BatteryDetector:
    """Rebuild a bundle's detector (eval mode, on ``device``) from its files alone."""
    bundle = Path(bundle)
    recipe = load_recipe(bundle)
    encoder = empty_backbone(recipe.arch, recipe.input_size, recipe.taps)
    encoder.load_state_dict(load_file(bundle / ENCODER_FILE, device=str(device)), assign=True)
    text = load_file(bundle / TEXT_FILE, device=str(device))["text"]
    with torch.device("meta"):
        decoder = TextDecoder(encoder.tap_widths, text.shape[1])
    state = load_file(bundle / DECODER_FILE, device=str(device))
    # bundles from before tap_weights scored with every tap
    state.setdefault("tap_weights", torch.ones(len(encoder.tap_widths), device=str(device)))
    decoder.load_state_dict(state, assign=True)
    decoder.norms.requires_grad_(False)
    bank = None
    if (bundle / MEMORY_FILE).is_file():
        saved = load_file(bundle / MEMORY_FILE, device=str(device))
        bank = MemoryBank(
            saved["features"], float(saved["scale"]), encoder.unit_taps, recipe.median_weight
        )
    det = BatteryDetector(
        encoder,
        decoder,
        text,
        bank,
        fusion=recipe.fusion,
        memory_weight=recipe.memory_weight,
        smoothing_sigma=recipe.smoothing_sigma,
        text_scale=recipe.text_scale,
    )
    return det.to(device).eval()
