"""``inspector evaluate``: score a bundle on a labelled MVTec-layout test set."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from inspector.cli.app import app
from inspector.cli.errors import user_errors
from inspector.runtime.backends import backend_names_text
from models.bundle_files import CALIBRATION_FILE


def _fmt(value: float | None) -> str:
    return "n/a (no masks)" if value is None else f"{value:.4f}"


def _calibrated_backend(bundle: Path) -> str | None:
    """The backend ``calibration.json`` says the thresholds were fitted with, if it says."""
    try:
        return json.loads((bundle / CALIBRATION_FILE).read_text(encoding="utf-8")).get("backend")
    except (OSError, ValueError, AttributeError):
        return None


@app.command()
def evaluate(
    bundle: Path = typer.Option(..., help="Model bundle folder."),
    data: Path = typer.Option(
        ..., help="MVTec-layout dataset: test/good, test/<defect>, optional ground_truth masks."
    ),
    json_out: Path = typer.Option(..., "--json", help="Where to write the metrics as JSON."),
    report: Path | None = typer.Option(
        None, help="Also write an HTML report (ROC curve, worst misses) here."
    ),
    backend: str | None = typer.Option(
        None,
        help=f"{backend_names_text()} (default: recipe.yaml's backend, "
        "the one 'inspector calibrate' fitted the thresholds with).",
    ),
    batch_size: int = typer.Option(8, min=1, help="Images per backend call."),
) -> None:
    """Image AUROC, pixel AUROC, AUPRO (FPR <= 0.3) and image F1-max of a bundle on a test set.

    Pixel metrics are null in the JSON when the dataset has no masks (image labels come from
    the folder names alone).
    """
    from inspector.offline.evaluation import evaluate as run_evaluation  # sklearn, scipy
    from inspector.offline.evaluation import write_json  # sklearn, scipy

    with user_errors():
        ev = run_evaluation(bundle, data, backend, batch_size, progress=True)
        write_json(ev, json_out)
        if report is not None:
            from inspector.offline.report import write_report  # sklearn, scipy

            write_report(ev, report)
    m = ev.metrics
    typer.echo(
        f"{m['n_images']} images ({m['n_normal']} normal, {m['n_defective']} defective), "
        f"model {ev.model_id}, backend {ev.backend}"
    )
    for name, key in (
        ("image AUROC", "image_auroc"),
        ("pixel AUROC", "pixel_auroc"),
        ("AUPRO@0.3", "aupro"),
        ("image F1-max", "image_f1_max"),
    ):
        typer.echo(f"  {name:<13} {_fmt(m[key])}")
    at = m["at_recipe_thresholds"]
    calibrated = (at["thresholds"] or {}).get("calibrated")
    typer.echo(
        f"  at the recipe's thresholds{'' if calibrated else ' (not calibrated)'}: "
        f"false-reject rate {at['false_reject_rate']}, escape rate {at['escape_rate']}"
    )
    fitted_with = _calibrated_backend(bundle)
    if calibrated and fitted_with and fitted_with != ev.backend:
        typer.secho(
            f"note: the thresholds were calibrated with the {fitted_with} backend; scores near "
            f"the limit may fall the other way on {ev.backend}",
            err=True,
        )
    for skipped in ev.skipped:
        typer.secho(f"skipped: {skipped}", err=True, fg=typer.colors.YELLOW)
    typer.echo(f"metrics: {json_out}" + (f", report: {report}" if report else ""))
