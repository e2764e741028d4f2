"""The chat's teacher: examples in the station's own words, and the command that trains on them.

Each example is a model input and the bundle's detector map of it
(``models.training.chat_training.detector_maps``: its normal images and Poisson synthetic
defects of them). The map (smoothed, fused, with its non-zero floor), read with the recipe's
thresholds, gives the region facts; the prompt is the station's own
(``inspector.explain.writers.batterygpt.chat_prompt``: the system prompt with those facts, the
chat template, the initial question, sometimes a follow-up after the first answer), and the
answer is the one the template writer gives from the same facts. The training loop itself is
``models.training.chat_training.train_chat``.

    python -m inspector.explain.chat_teacher --bundle bundles/pouch \\
        --images data/pouch/train/good --llm /models/vicuna-7b-v1.5 \\
        --out bundles/pouch/chat.safetensors --steps 2000
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import typer

from inspector.explain.facts import facts_from_map
from inspector.explain.writers import batterygpt
from inspector.explain.writers.base import INITIAL_QUESTION, RejectContext
from inspector.explain.writers.template import TemplateWriter
from models.bundle import load_detector
from models.chat import DEFAULT_TEMPLATE, TEMPLATES, BatteryChat, save_chat_weights
from models.data.datasets import train_images
from models.detector import BatteryDetector
from models.image_io import read_image
from models.preprocess import resize_map
from models.recipe import Recipe, load_recipe
from models.training.chat_training import Example, detector_maps, train_chat

log = logging.getLogger("inspector.explain.chat_teacher")

FOLLOW_UPS = (
    "How many defects are there?",
    "Where is the defect?",
    "How big is it?",
    "What shape is it?",
    "How strong is the anomaly score?",
)
EXAMPLES_SEED = 104729  # not the decoder's training seed: other synthetic defects


def detector_examples(
    detector: BatteryDetector,
    images: Sequence[np.ndarray],
    recipe: Recipe,
    n: int = 256,
    seed: int = EXAMPLES_SEED,
    template: str = DEFAULT_TEMPLATE,
    follow_ups: float = 0.3,
) -> list[Example]:
    """``n`` examples from the bundle's own images, maps, facts, prompt and answers.

    Args:
        detector: the bundle's detector (its map is what the chat sees at the station).
        images: normal frames as read from disk; half the examples get a synthetic defect.
        recipe: the bundle's recipe: thresholds (calibrated ones, ideally), bit depth, pitch.
        n: how many examples.
        seed: seed of the synthetic defects and of the questions.
        template: the chat template the station will use.
        follow_ups: share of examples asking a follow-up after the first answer.
    """
    if not recipe.thresholds.calibrated:
        log.warning("the recipe's thresholds are not calibrated: answers follow the defaults")
    frame_shape = images[0].shape[:2]
    rng = np.random.default_rng([seed, 1])
    teacher = TemplateWriter()
    examples = []
    for x, amap, score in detector_maps(detector, images, n, seed, recipe.bit_depth):
        facts = facts_from_map(
            resize_map(amap.numpy(), frame_shape),
            recipe.thresholds,
            recipe.pixel_pitch_mm,
            recipe.product,
            score,
        )
        ctx = RejectContext(facts)
        history, question = [], INITIAL_QUESTION
        if rng.random() < follow_ups:
            history = [
                {"role": "user", "text": INITIAL_QUESTION},
                {"role": "assistant", "text": teacher.explain(ctx)},
            ]
            question = FOLLOW_UPS[int(rng.integers(len(FOLLOW_UPS)))]
        prompt = batterygpt.chat_prompt(facts, history, question, template)  # the station's
        answer = teacher.reply(ctx, history, question)
        examples.append(Example(x, amap, prompt, answer, facts.verdict))
    return examples


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    bundle: Path = typer.Option(..., help="bundle whose detector makes the maps (and encoder 2)"),
    images: Path = typer.Option(
        ..., help="normal images of the product: MVTec layout (train/good) or a folder"
    ),
    llm: Path = typer.Option(..., help="local folder of the causal LM (e.g. Vicuna v1.5)"),
    out: Path = typer.Option(..., help="where to write the trained weights (.safetensors)"),
    steps: int = typer.Option(1000, min=1),
    batch_size: int = typer.Option(4, min=1),
    lr: float = typer.Option(1e-3, min=0.0),
    examples: int = typer.Option(256, min=1, help="examples made from the images"),
    template: str = typer.Option(DEFAULT_TEMPLATE, help=f"one of {', '.join(TEMPLATES)}"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Train the chat's prompt learner and projection on the bundle's own maps and facts."""
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    try:
        frames = [read_image(p) for p in train_images(images)]
        detector = load_detector(bundle, dev)
        made = detector_examples(
            detector, frames, load_recipe(bundle), examples, template=template
        )
        chat = BatteryChat.from_pretrained(llm, detector.encoder, device=dev, template=template)
    except (FileNotFoundError, ValueError, OSError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    fails = sum(ex.verdict == "fail" for ex in made)
    typer.echo(f"{len(made)} examples from {len(frames)} image(s): {fails} with defect regions")
    losses = train_chat(chat, made, steps, batch_size, lr)
    save_chat_weights(chat.vision, out)
    typer.echo(f"wrote {out} (loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f})")


if __name__ == "__main__":
    app()
