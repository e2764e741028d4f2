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
    arch: str = typer.Option("tiny", help="Encoder architecture: vit-h-14 or tiny."),
    weights: Path | None = typer.Option(
        None, help="Local OpenCLIP checkpoint (needed for vit-h-14; never downloaded)."
    ),
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
    seed: int = typer.Option(0, help="Seed for the random weights of the tiny architecture."),
    force: bool = typer.Option(False, help="Overwrite an existing bundle in --out."),
) -> None:
    """Create a model bundle: encoder, decoder, cached prompt embeddings, memory bank, recipe."""
    from models.bundle import create_bundle
    from models.datasets import pick_evenly
    from models.image_io import list_images, read_image
    from models.recipe import RECIPE_FILE

    with user_errors():
        if (out / RECIPE_FILE).exists() and not force:
            raise fail(f"{out} already holds a bundle; pass --force to overwrite it")
        refs = []
        if reference_dir is not None:
            paths = pick_evenly(list_images(reference_dir), shots)
            if not paths:
                raise fail(f"{reference_dir} contains no images")
            refs = [read_image(p) for p in paths]
        recipe = create_bundle(
            out, arch, product, weights, refs, seed, bit_depth, pixel_pitch_mm, progress=True
        )
    typer.echo(
        f"bundle {out}: {recipe.arch}, product {recipe.product!r}, "
        f"{recipe.n_reference_images} reference image(s), taps {recipe.taps}"
    )
