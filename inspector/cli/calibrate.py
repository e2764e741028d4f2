"""``inspector calibrate``: thresholds for a target false-reject rate, from normal images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from inspector.cli.app import app
from inspector.cli.errors import fail, user_errors
from inspector.runtime.backends import backend_names_text
from inspector.runtime.predictor import Predictor
from models.bundle_files import CALIBRATION_FILE
from models.data.datasets import GOOD, Sample, defect_samples, normal_folders, normal_images
from models.recipe import CALIBRATION_MARGIN, record_step

if TYPE_CHECKING:  # it imports sklearn and scipy: the command imports it when it runs
    from inspector.offline.calibration import CalibrationResult


@app.command()
def calibrate(
    bundle: Path = typer.Option(..., help="Model bundle folder; its recipe.yaml is updated."),
    data: Path = typer.Option(
        ...,
        help="MVTec-layout dataset (normal images from test/good, labelled defects from "
        "test/<defect>) or a plain folder of normal images.",
    ),
    false_reject_rate: float = typer.Option(
        0.01, help="Wanted share of normal cells rejected, e.g. 0.01 for 1 %."
    ),
    include_train: bool = typer.Option(
        False,
        help="Also use train/good. Those images trained the decoder or filled the memory "
        "bank, so they score lower than new cells and make the thresholds too strict.",
    ),
    holdout: bool = typer.Option(
        True, help="Hold out 30 % of the normal images to check the rate (needs 20+)."
    ),
    backend: str | None = typer.Option(
        None,
        help=f"{backend_names_text()} (default: the bundle's recipe). "
        "The one the line will use; it is recorded in recipe.yaml with the thresholds.",
    ),
    margin: float = typer.Option(
        CALIBRATION_MARGIN,
        min=0.0,
        max=0.5,
        help="Score units between the highest normal score left to pass and the image "
        "threshold, so that backends that differ in the last digits agree on the verdict.",
    ),
    seed: int = typer.Option(0, help="Seed of the held-out split."),
    dry_run: bool = typer.Option(False, help="Show what would be chosen; change nothing."),
) -> None:
    """Set the pixel threshold, minimum defect area and image threshold in recipe.yaml.

    Prints what it chose and why, the false-reject rate on held-out normal images and, when
    the dataset has labelled defects, the escape rate at that point. Calibrate with the
    backend the line will use, on normal images the bundle has not seen.
    """
    from inspector.offline.calibration import calibrate as run_calibration  # sklearn, scipy

    with user_errors():
        if not 0.0 < false_reject_rate < 1.0:
            raise fail(f"--false-reject-rate must be between 0 and 1, got {false_reject_rate}")
        normal, folders, defects = _calibration_images(data, include_train)
        predictor = Predictor(bundle, backend)
        _note_reference_images(predictor, folders)
        try:
            result = run_calibration(
                predictor,
                normal,
                defects,
                false_reject_rate,
                holdout=holdout,
                seed=seed,
                write=not dry_run,
                margin=margin,
            )
        finally:
            predictor.close()
        if not dry_run:
            params = {
                "false_reject_rate": false_reject_rate, "include_train": include_train,
                "holdout": holdout, "backend": result.backend, "margin": margin, "seed": seed,
            }
            images = {"calibration": normal, "defects": [s.path for s in defects]}
            record_step(bundle, "calibrate", params, images)
    _print_outcome(bundle, result, dry_run)


def _calibration_images(
    data: Path, include_train: bool
) -> tuple[list[Path], list[Path], list[Sample]]:
    """The normal images, the folders they come from and the labelled defects, as counted."""
    normal = normal_images(data, include_train)
    folders = normal_folders(data, include_train)
    defects = defect_samples(data)
    typer.echo(
        f"normal images: {len(normal)} from {', '.join(map(str, folders))}; "
        f"labelled defective images: {len(defects)}"
    )
    return normal, folders, defects


def _note_reference_images(predictor: Predictor, folders: list[Path]) -> None:
    """Say when the normal images may include the bundle's own references (they score near 0)."""
    if predictor.recipe.n_reference_images and any(
        f.name == GOOD and f.parent.name == "train" for f in folders
    ):
        typer.secho(
            "note: train/good may hold the bundle's reference images, which score near 0",
            err=True,
        )


def _print_outcome(bundle: Path, result: CalibrationResult, dry_run: bool) -> None:
    """What was chosen and why, and where it was written (if it was)."""
    for line in result.summary():
        typer.echo(line)
    if dry_run:
        typer.echo("dry run: recipe.yaml unchanged")
    else:
        typer.echo(
            f"wrote thresholds and backend {result.backend} to {bundle / 'recipe.yaml'} "
            f"(calibrated: true) and the details to {bundle / CALIBRATION_FILE}"
        )
