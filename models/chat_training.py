"""Train the chat's prompt learner and image projection on synthetic question/answer pairs.

Each example is a procedural cell image (``models.synth``) with 0-2 synthetic defects in
distinct cells of the 3x3 grid (Poisson-blended patches, ``models.poisson``, or drawn
scratches), an anomaly map made from the changed pixels (blurred, scaled, with noise, as a
detector would give), one question and the answer that map implies, e.g.
"Is there any anomaly in the image?" / "Yes, two, upper centre and lower centre." The language
model and image encoder 2 stay frozen; the loss is the LM's cross-entropy on the answer tokens.

    python -m models.chat_training --bundle bundles/pouch --llm /models/vicuna-7b-v1.5 \\
        --out bundles/pouch/chat.safetensors --steps 2000
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import typer
from tqdm import tqdm

from models.chat import VICUNA_SYSTEM, BatteryChat, build_prompt, save_chat_weights
from models.preprocess import preprocess

ROWS = ("upper", "centre", "lower")
COLUMNS = ("left", "centre", "right")
NUMBERS = ("no", "one", "two", "three")
QUESTIONS = (
    "Is there any anomaly in the image?",
    "How many defects are there?",
    "Where is the defect?",
)


def grid_word(row: int, col: int) -> str:
    """3x3-grid words as ``inspector.decision.position_word`` gives them ("upper centre")."""
    return "centre" if row == col == 1 else f"{ROWS[row]} {COLUMNS[col]}"


@dataclass
class Example:
    """One training item: preprocessed image, anomaly map, question and answer."""

    image: torch.Tensor  # [3, S, S]
    amap: torch.Tensor  # [S, S]
    question: str
    answer: str
    positions: list[str]


def answer_for(question: str, positions: list[str], product: str) -> str:
    """The answer that a mask with defects at ``positions`` implies."""
    n = len(positions)
    places = " and ".join(positions)
    if question == QUESTIONS[0]:
        return f"Yes, {NUMBERS[n]}, {places}." if n else f"No, the {product} looks normal."
    if question == QUESTIONS[1]:
        return f"{NUMBERS[n].capitalize()}." if n else "None."
    return f"In the {places}." if n else "There is no defect."


def map_positions(amap: np.ndarray, threshold: float = 0.5, min_area: int = 20) -> list[str]:
    """3x3 words of the map's regions, as the station's decision would name them, in reading
    order (8-connected areas at or above ``threshold``, at least ``min_area`` pixels)."""
    h, w = amap.shape
    mask = (amap >= threshold).astype(np.uint8)
    n, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_area:
            continue
        cx, cy = centroids[i, 0] + 0.5, centroids[i, 1] + 0.5
        row, col = min(2, int(3 * cy / h)), min(2, int(3 * cx / w))
        found.append((row, col))
    return [grid_word(r, c) for r, c in sorted(found)]


def _scratch(rng: np.random.Generator, image: np.ndarray, cell: tuple[int, int, int, int]):
    """Draw a thin bright or dark line inside ``cell`` (x0, y0, x1, y1); returns its 0/1 mask."""
    x0, y0, x1, y1 = cell
    cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
    dx, dy = rng.uniform(-1, 1, 2) * (x1 - x0)
    mask = np.zeros(image.shape[:2], np.uint8)
    p0, p1 = (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy))
    cv2.line(mask, p0, p1, 1, int(rng.integers(2, 4)))
    shift = float(rng.choice([-1, 1]) * rng.uniform(40, 80))
    image[mask > 0] = np.clip(image[mask > 0].astype(np.float32) + shift, 0, 255)
    return mask


def synthetic_example(
    rng: np.random.Generator, size: int = 224, product: str = "pouch cell", kind: str = "pouch"
) -> Example:
    """A procedural cell (``models.synth``) with 0, 1 or 2 defects in distinct cells of the 3x3
    grid (Poisson-blended patches of another cell, ``models.poisson``, or drawn scratches), its
    map and one question with the answer the map implies."""
    from models.poisson import synthetic_defect
    from models.synth import render

    image, _ = render(kind, int(rng.integers(1 << 31)), size=(size, size))
    other = "ultrasound" if kind == "pouch" else "pouch"  # a foreign texture blends visibly
    source, _ = render(other, int(rng.integers(1 << 31)), size=(size, size))
    label = np.zeros((size, size), np.uint8)
    step = size / 3
    for cell in rng.choice(9, size=int(rng.choice(3, p=[0.2, 0.4, 0.4])), replace=False):
        row, col = divmod(int(cell), 3)
        box = tuple(
            int(v)
            for v in (
                (col + 0.3) * step,
                (row + 0.3) * step,
                (col + 0.7) * step,
                (row + 0.7) * step,
            )
        )
        if rng.random() < 0.7:
            region = np.zeros_like(label)
            region[box[1] : box[3], box[0] : box[2]] = 1
            image, changed, _ = synthetic_defect(
                image, source, rng, scale=(0.12, 0.22), region=region
            )
        else:
            changed = _scratch(rng, image, box)
        label |= changed.astype(np.uint8)
    grown = cv2.dilate(label * 255, np.ones((5, 5), np.uint8))  # thin changes survive the blur
    amap = cv2.GaussianBlur(grown.astype(np.float32) / 255.0, (0, 0), 2.0)
    amap = np.clip(amap * rng.uniform(0.7, 1.0) + rng.normal(0, 0.03, amap.shape), 0, 1)
    amap = amap.astype(np.float32)
    positions = map_positions(amap)
    question = QUESTIONS[int(rng.integers(len(QUESTIONS)))]
    return Example(
        torch.from_numpy(preprocess(image, size)),
        torch.from_numpy(amap),
        question,
        answer_for(question, positions, product),
        positions,
    )


def example_loss(chat: BatteryChat, ex: Example) -> torch.Tensor:
    """Cross-entropy of the answer (and EOS) given the prompt with image and map tokens."""
    dev = chat.device
    tokens = chat.vision(ex.image[None].to(dev), ex.amap[None].to(dev))[0]
    prompt_embeds, _ = chat.embed_prompt(build_prompt(VICUNA_SYSTEM, [], ex.question), tokens)
    answer_ids = chat.tokenizer(" " + ex.answer, add_special_tokens=False)["input_ids"]
    answer = torch.tensor([*answer_ids, chat.tokenizer.eos_token_id], device=dev)
    answer_embeds = chat.llm.get_input_embeddings()(answer)[None]
    logits = chat.llm(inputs_embeds=torch.cat([prompt_embeds, answer_embeds], dim=1)).logits[0]
    start = prompt_embeds.shape[1] - 1  # the logit at t predicts token t + 1
    return F.cross_entropy(logits[start : start + len(answer)].float(), answer)


def train_chat(
    chat: BatteryChat,
    steps: int = 1000,
    batch_size: int = 4,
    lr: float = 1e-3,
    seed: int = 0,
    examples: list[Example] | None = None,
    progress: bool = True,
    product: str = "pouch cell",
) -> list[float]:
    """Adam on the prompt learner and projection; returns the loss of every step.

    Args:
        chat: the chat to train in place (LM and encoder 2 frozen).
        examples: a fixed set to cycle through; fresh synthetic examples when None.
    """
    rng = np.random.default_rng(seed)
    vision = chat.vision
    params = [*vision.image_proj.parameters(), *vision.prompt_learner.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    vision.train()
    vision.encoder.eval()
    losses = []
    bar = tqdm(range(steps), desc="chat training", unit="step", disable=not progress)
    for step in bar:
        total = 0.0
        for b in range(batch_size):
            if examples:
                ex = examples[(step * batch_size + b) % len(examples)]
            else:
                ex = synthetic_example(rng, vision.encoder.image_size, product)
            loss = example_loss(chat, ex) / batch_size
            loss.backward()
            total += float(loss.detach())
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(total)
        bar.set_postfix(loss=f"{total:.3f}")
    vision.eval()
    return losses


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    bundle: Path = typer.Option(..., help="bundle whose encoder initialises image encoder 2"),
    llm: Path = typer.Option(..., help="local folder of the causal LM (e.g. Vicuna v1.5)"),
    out: Path = typer.Option(..., help="where to write the trained weights (.safetensors)"),
    steps: int = typer.Option(1000, min=1),
    batch_size: int = typer.Option(4, min=1),
    lr: float = typer.Option(1e-3, min=0.0),
    product: str = typer.Option("pouch cell", help="product noun used in the answers"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Train the chat's prompt learner and projection on synthetic question/answer pairs."""
    from models.bundle import load_detector

    try:
        chat = BatteryChat.from_pretrained(llm, load_detector(bundle).encoder, device=device)
    except (FileNotFoundError, ValueError, OSError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    losses = train_chat(chat, steps, batch_size, lr, product=product)
    save_chat_weights(chat.vision, out)
    typer.echo(f"wrote {out} (loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f})")


if __name__ == "__main__":
    app()
