"""``inspector synth``: a procedural battery dataset in MVTec layout, with masks."""

from __future__ import annotations

from pathlib import Path

import typer

from inspector.cli.app import app
from inspector.cli.errors import fail, user_errors


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"512x384"`` -> ``(512, 384)``."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise fail(f"--size must look like 512x384, got {text!r}") from None
    return w, h


@app.command()
def synth(
    out: Path = typer.Option(..., help="Folder to write the dataset into."),
    kind: str = typer.Option(..., help="pouch (optical top view) or ultrasound (internal scan)."),
    train: int = typer.Option(20, min=0, help="Normal training images (train/good)."),
    test_good: int = typer.Option(
        20, min=0, help="Normal test images (test/good); 20+ give calibration a held-out check."
    ),
    test_defect: int = typer.Option(10, min=0, help="Test images per defect type, with masks."),
    seed: int = typer.Option(0, help="Same seed, same images."),
    size: str | None = typer.Option(None, help="WIDTHxHEIGHT, 200..700 px per side."),
) -> None:
    """Write procedural battery images with pixel masks in MVTec layout.

    Pouch defects: scratch, dent, particle, edge_crack. Ultrasound: bubble, bubble_cluster.
    """
    from models.data.synth import write_dataset  # tqdm, numpy.random: not at --help

    with user_errors():
        counts = write_dataset(
            out, kind, train, test_good, test_defect, seed, parse_size(size), progress=True
        )
    typer.echo(f"{out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
