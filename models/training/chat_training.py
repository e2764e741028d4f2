"""Train the chat's prompt learner and image projection on what the chat will be shown.

Examples come from the bundle itself: its normal images and Poisson synthetic defects of them
(``models.data.poisson.SyntheticDefectSet``, as the decoder trains), each run through the bundle's
own detector. The detector's map (smoothed, fused, with its non-zero floor), read with the
recipe's thresholds, gives the region facts; the prompt is the station's own
(``inspector.explain.writers.batterygpt.chat_prompt``: the system prompt with those facts,
the chat template, the initial question, sometimes a follow-up after the first answer), and
the answer is the one the template backend writes from the same facts. The language model and
the image encoder stay frozen; the loss is the LM's cross-entropy on the answer tokens, which
are tokenised in context as FastChat does (``models.chat.answer_ids``).

    python -m models.training.chat_training --bundle bundles/pouch --images data/pouch/train/good \\
        --llm /models/vicuna-7b-v1.5 --out bundles/pouch/chat.safetensors --steps 2000
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import typer
from tqdm import tqdm

from models.chat import (
    DEFAULT_TEMPLATE,
    IMAGE_PLACEHOLDER,
    TEMPLATES,
    BatteryChat,
    answer_ids,
    save_chat_weights,
)
from models.data.poisson import SyntheticDefectSet
from models.detector import BatteryDetector
from models.preprocess import resize_map
from models.recipe import Recipe

log = logging.getLogger("models.training.chat_training")

FOLLOW_UPS = (
    "How many defects are there?",
    "Where is the defect?",
    "How big is it?",
    "What shape is it?",
    "How strong is the anomaly score?",
)
EXAMPLES_SEED = 104729  # not the decoder's training seed: other synthetic defects


@dataclass
class Example:
    """One training item: the model input, the detector's map, the prompt and the answer."""

    image: torch.Tensor  # [3, S, S], as the station preprocesses a frame
    amap: torch.Tensor  # [S, S], the detector's anomaly map
    prompt: str  # the station's prompt, ``<ImageHere>`` where the image tokens go
    answer: str
    verdict: str  # "pass" | "fail", from the facts


@torch.no_grad()
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
    from inspector.explain.facts import facts_from_map
    from inspector.explain.writers.base import INITIAL_QUESTION, RejectContext
    from inspector.explain.writers.batterygpt import chat_prompt
    from inspector.explain.writers.template import TemplateBackend

    if not recipe.thresholds.calibrated:
        log.warning("the recipe's thresholds are not calibrated: answers follow the defaults")
    data = SyntheticDefectSet(images, detector.image_size, n, seed, bit_depth=recipe.bit_depth)
    frame_shape = images[0].shape[:2]
    device = detector.text_embeddings.device
    rng = np.random.default_rng([seed, 1])
    teacher = TemplateBackend()
    examples = []
    for i in range(n):
        x, _, _ = data[i]
        amap, score = detector(x[None].to(device))
        amap = amap[0].float().cpu()
        facts = facts_from_map(
            resize_map(amap.numpy(), frame_shape),
            recipe.thresholds,
            recipe.pixel_pitch_mm,
            recipe.product,
            float(score[0]),
        )
        ctx = RejectContext(facts)
        history, question = [], INITIAL_QUESTION
        if rng.random() < follow_ups:
            history = [
                {"role": "user", "text": INITIAL_QUESTION},
                {"role": "assistant", "text": teacher.explain(ctx)},
            ]
            question = FOLLOW_UPS[int(rng.integers(len(FOLLOW_UPS)))]
        prompt = chat_prompt(facts, history, question, template)
        answer = teacher.reply(ctx, history, question)
        examples.append(Example(x, amap, prompt, answer, facts.verdict))
    return examples


def example_loss(chat: BatteryChat, ex: Example) -> torch.Tensor:
    """Cross-entropy of the answer (and its end) given the prompt with image and map tokens."""
    dev = chat.device
    tokens = chat.vision(ex.image[None].to(dev), ex.amap[None].to(dev))[0]
    prompt_embeds, _ = chat.embed_prompt(ex.prompt, tokens)
    tail = ex.prompt.partition(IMAGE_PLACEHOLDER)[2]
    answer = torch.tensor(answer_ids(chat.tokenizer, tail, ex.answer, chat.template), device=dev)
    answer_embeds = chat.llm.get_input_embeddings()(answer)[None]
    logits = chat.llm(inputs_embeds=torch.cat([prompt_embeds, answer_embeds], dim=1)).logits[0]
    start = prompt_embeds.shape[1] - 1  # the logit at t predicts token t + 1
    return F.cross_entropy(logits[start : start + len(answer)].float(), answer)


def grad_scaler(chat: BatteryChat) -> torch.amp.GradScaler:
    """Loss scaling for an fp16 language model (its small gradients underflow otherwise);
    disabled for bf16 and fp32, whose range needs none."""
    return torch.amp.GradScaler(chat.device.type, enabled=chat.dtype == torch.float16)


def train_chat(
    chat: BatteryChat,
    examples: Sequence[Example],
    steps: int = 1000,
    batch_size: int = 4,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Adam on the prompt learner and projection; returns the loss of every step.

    Args:
        chat: the chat to train in place (LM and encoder frozen).
        examples: from ``detector_examples``; cycled through in a seeded random order.
    """
    if not examples:
        raise ValueError("chat training needs at least one example")
    order = np.random.default_rng(seed).permutation(len(examples))
    vision = chat.vision
    params = [*vision.image_proj.parameters(), *vision.prompt_learner.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    scaler = grad_scaler(chat)
    vision.train()
    vision.encoder.eval()
    losses = []
    bar = tqdm(range(steps), desc="chat training", unit="step", disable=not progress)
    for step in bar:
        total = 0.0
        for b in range(batch_size):
            ex = examples[int(order[(step * batch_size + b) % len(examples)])]
            loss = example_loss(chat, ex) / batch_size
            scaler.scale(loss).backward()
            total += float(loss.detach())
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        losses.append(total)
        bar.set_postfix(loss=f"{total:.3f}")
    vision.eval()
    chat.forget_images()
    return losses


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
    from models.bundle import load_detector
    from models.data.datasets import train_images
    from models.image_io import read_image
    from models.recipe import load_recipe

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
