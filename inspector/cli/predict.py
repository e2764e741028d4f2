"""``inspector predict``: inspect image files with a bundle and write what was found."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from inspector.cli.app import app
from inspector.cli.errors import fail, user_errors


def output_stems(paths: list[Path]) -> list[str]:
    """File stems, made unique where two inputs share a name."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        stems.append(p.stem if n == 0 else f"{p.stem}-{n}")
    return stems


@app.command()
def predict(
    images: list[Path] = typer.Argument(..., help="Image files to inspect."),
    bundle: Path = typer.Option(..., help="Model bundle folder."),
    out: Path = typer.Option(..., help="Folder for the JSON, overlay PNG and map of each image."),
    backend: str | None = typer.Option(
        None,
        help="torch, onnxruntime, onnxruntime-int8 or tensorrt (default: the bundle's recipe).",
    ),
    save_map: bool = typer.Option(False, help="Also save the float32 map (frame size) as .npy."),
    batch_size: int = typer.Option(8, min=1, help="Images per backend call."),
) -> None:
    """Inspect images: per image a JSON verdict with regions, an overlay PNG and optionally the map.

    Exit status 0 when every image was inspected, 1 when any could not be read.
    """
    import numpy as np

    from inspector.overlay import render_overlay
    from inspector.predictor import Predictor
    from models.image_io import ImageError, read_image, write_png

    with user_errors():
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
                write_png(out / f"{stem}_overlay.png", render_overlay(frame, full, result.decision))
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
