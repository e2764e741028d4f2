"""``inspector train``: teach a bundle's decoder from normal images (Poisson synthetic defects)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer

from inspector.cli.app import app
from inspector.cli.errors import fail, user_errors
from inspector.vision.tiling import cut_as_inspected
from models.data.datasets import train_images
from models.image_io import read_image
from models.recipe import Recipe, load_recipe, record_step

if TYPE_CHECKING:  # it imports torch: the command imports it when it runs
    from models.training.train import TrainConfig, TrainResult


@app.command()
def train(
    bundle: Path = typer.Option(..., help="Model bundle folder; its decoder is trained in place."),
    data: Path = typer.Option(
        ..., help="MVTec-layout dataset (its train/good is used) or a folder of normal images."
    ),
    epochs: int | None = typer.Option(
        None, min=1, help="Passes over the synthetic training set (default 10; vit-h-14: 80)."
    ),
    batch_size: int | None = typer.Option(
        None, min=1, help="Images per forward pass (default 8)."
    ),
    accumulate: int | None = typer.Option(
        None,
        min=1,
        help="Forward passes whose gradients add up to one optimizer step (default 1; "
        "vit-h-14: 4, batch 32 as in the paper).",
    ),
    samples_per_epoch: int | None = typer.Option(
        None,
        min=2,
        help="Samples per epoch, half normal, half synthetic defects "
        "(default: max(64, 2 x images); vit-h-14: 400).",
    ),
    patience: int | None = typer.Option(
        None,
        min=1,
        help="Stop after this many epochs without a better held-out pixel AUROC and keep the "
        "best epoch (default off; vit-h-14: 10).",
    ),
    lr: float = typer.Option(1e-3, min=0.0, help="Adam learning rate."),
    seed: int = typer.Option(0, help="Same seed, same data and same weights."),
    device: str | None = typer.Option(None, help="torch device (default: cuda if present)."),
) -> None:
    """Train the decoder on Poisson synthetic defects of normal images; encoders stay frozen.

    Progress is checkpointed into the bundle: after an interruption (Ctrl-C, power cut) run the
    same command again to resume. Training changes the score scale, so the recipe's thresholds
    are marked uncalibrated: run 'inspector calibrate' afterwards.
    """
    from models.training.train import TrainConfig  # torch

    with user_errors():
        paths = train_images(data)
        images = [read_image(p) for p in paths]
        recipe = load_recipe(bundle)
        images = _as_inspected(images, recipe)
        config = TrainConfig.for_arch(
            recipe.arch,
            epochs=epochs,
            batch_size=batch_size,
            accumulate=accumulate,
            lr=lr,
            seed=seed,
            samples_per_epoch=samples_per_epoch,
            patience=patience,
        )
        typer.echo(f"training {bundle} on {len(images)} normal image(s) from {paths[0].parent}")
        result = _train_or_say_how_to_resume(bundle, images, config, device)
        if result.steps_run:
            params = {
                "epochs": epochs, "batch_size": batch_size, "accumulate": accumulate,
                "samples_per_epoch": samples_per_epoch, "lr": lr, "seed": seed,
            }
            record_step(bundle, "train", params, {"training": paths})
    _print_outcome(bundle, result, config)


def _as_inspected(images: list[np.ndarray], recipe: Recipe) -> list[np.ndarray]:
    """What training sees of the normal images: the images, or their tiles when the bundle
    inspects a ROI or tiles (train on what inspection scores)."""
    if recipe.roi is None and not recipe.tiled:
        return images
    tiles = cut_as_inspected(images, recipe)
    typer.echo(f"{len(images)} image(s) cut as inspection cuts frames: {len(tiles)} tiles")
    return tiles


def _train_or_say_how_to_resume(
    bundle: Path, images: list[np.ndarray], config: TrainConfig, device: str | None
) -> TrainResult:
    """``train_bundle``'s result; Ctrl-C ends the command with where the progress is kept."""
    from models.training.train import CHECKPOINT_FILE, train_bundle  # torch

    try:
        return train_bundle(bundle, images, config, progress=True, device=device)
    except KeyboardInterrupt:
        raise fail(
            f"interrupted; progress saved in {bundle / CHECKPOINT_FILE}: "
            "run the same command to resume",
            code=130,
        ) from None


def _print_outcome(bundle: Path, result: TrainResult, config: TrainConfig) -> None:
    """What training did: resumed from where, the losses, early stop, head check, next step."""
    if result.resumed_from is not None:
        e, s = result.resumed_from
        typer.echo(f"resumed from epoch {e + 1}, step {s}")
    losses = result.epoch_losses
    if result.steps_run and losses:
        typer.echo(
            f"trained {bundle}: {result.epochs_done} epoch(s), loss per epoch "
            + " ".join(f"{v:.4f}" for v in losses[-min(len(losses), 10) :])
        )
    else:
        typer.echo(f"{bundle} was already trained for {result.epochs_done} epoch(s)")
    if result.stopped_early:
        typer.echo(
            f"stopped early: no better held-out pixel AUROC for {config.patience} epoch(s); "
            f"kept epoch {result.best_epoch}"
        )
    if result.head is not None:
        typer.echo(result.head.summary())
    if result.steps_run:
        typer.echo("thresholds are not calibrated for the new weights: run 'inspector calibrate'")
