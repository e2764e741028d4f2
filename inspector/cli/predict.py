"""``inspector predict``: inspect image files with a bundle and write what was found."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import typer

from inspector.cli.app import app
from inspector.cli.errors import fail, user_errors
from inspector.runtime.backends import backend_names_text
from inspector.runtime.predictor import Predictor
from inspector.vision.overlay import render_overlay
from models.image_io import IMAGE_SUFFIXES, ImageError, read_image, write_png


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """The image files to inspect: files as given, folders searched recursively (sorted).

    Raises:
        ValueError: a folder holds no image at any depth.
    """
    paths: list[Path] = []
    for item in inputs:
        if not item.is_dir():
            paths.append(item)  # a missing or unreadable file gets its own error record
            continue
        found = sorted(
            p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not found:
            raise ValueError(f"{item}: no images in this folder or below it")
        paths += found
    return paths


def output_stems(paths: list[Path]) -> list[str]:
    """Output names: each image's path relative to the folder all inputs share, without its
    suffix (``good/0000``, ``scratch/0000``), made unique where two are still equal."""
    absolute = [Path(os.path.abspath(p)) for p in paths]
    root = Path(os.path.commonpath([p.parent for p in absolute])) if absolute else Path()
    seen: dict[str, int] = {}
    stems = []
    for p in absolute:
        stem = p.relative_to(root).with_suffix("").as_posix()
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        stems.append(stem if n == 0 else f"{stem}-{n}")
    return stems


@app.command()
def predict(
    inputs: list[Path] = typer.Argument(
        ...,
        metavar="IMAGE_OR_FOLDER...",
        help="Image files, or folders to inspect recursively; outputs keep the sub-folders.",
    ),
    bundle: Path = typer.Option(..., help="Model bundle folder."),
    out: Path = typer.Option(..., help="Folder for the JSON, overlay PNG and map of each image."),
    backend: str | None = typer.Option(
        None,
        help=f"{backend_names_text()} (default: the bundle's recipe).",
    ),
    save_map: bool = typer.Option(False, help="Also save the float32 map (frame size) as .npy."),
    batch_size: int = typer.Option(8, min=1, help="Images per backend call."),
) -> None:
    """Inspect images: per image a JSON verdict with regions, an overlay PNG and optionally the map.

    Output names keep each image's path below the folder the inputs share (predict DIR writes
    OUT/good/0000.json for DIR/good/0000.png). Exit status 0 when every image was inspected, 1
    when any could not be read.
    """
    with user_errors():
        images = expand_inputs(inputs)
        predictor = Predictor(bundle, backend)
    out.mkdir(parents=True, exist_ok=True)
    if not predictor.recipe.thresholds.calibrated:
        typer.secho("note: thresholds are not calibrated (run 'inspector calibrate')", err=True)
    stems = output_stems(images)
    errors = 0
    for start in range(0, len(images), batch_size):
        chunk = list(
            zip(images[start : start + batch_size], stems[start : start + batch_size], strict=True)
        )
        frames: list = []
        for path, _ in chunk:
            try:
                frames.append(read_image(path))
            except ImageError as exc:
                frames.append(exc)
        readable = [f for f in frames if not isinstance(f, ImageError)]
        results = iter(predictor.inspect_batch(readable))
        for (path, stem), frame in zip(chunk, frames, strict=True):
            result = frame if isinstance(frame, ImageError) else next(results)
            (out / stem).parent.mkdir(parents=True, exist_ok=True)
            record = {
                "image": str(path),
                "model_id": predictor.model_id,
                "backend": predictor.backend.name,
            }
            if isinstance(result, ImageError):
                errors += 1
                record |= {"verdict": "error", "error": str(result)}
                typer.secho(f"{path}  ERROR  {result}", fg=typer.colors.YELLOW)
            else:
                record |= {"width": result.frame_shape[1], "height": result.frame_shape[0]}
                record |= result.decision.to_dict()
                full = result.full_map()
                roi, tiles = result.outlines()
                picture = render_overlay(frame, full, result.decision, roi, tiles)
                write_png(out / f"{stem}_overlay.png", picture)
                if save_map:
                    np.save(out / f"{stem}_map.npy", full.astype(np.float32))
                where = ", ".join(r.position for r in result.decision.regions)
                colour = typer.colors.RED if result.verdict == "fail" else typer.colors.GREEN
                typer.secho(
                    f"{path}  {result.verdict.upper()}  score {record['image_score']:.3f}"
                    + (f"  regions: {where}" if where else ""),
                    fg=colour,
                )
            (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    predictor.close()
    if errors:
        raise fail(f"{errors} of {len(images)} image(s) could not be inspected", code=1)
