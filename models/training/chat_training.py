"""Train the chat's prompt learner and image projection on examples of what it will be shown.

An ``Example`` is a model input, the bundle's own detector map of it, a prompt and the answer
to learn. ``detector_maps`` makes the inputs and maps: the bundle's normal images and Poisson
synthetic defects of them (``models.data.poisson.SyntheticDefectSet``, as the decoder trains),
each run through the bundle's detector. The prompts and answers are the explainer's words, so
the caller writes them (``inspector.explain.chat_teacher``: the station's prompt and the
template writer's answer from the map's facts). The language model and the image encoder
stay frozen; the loss is the LM's cross-entropy on the answer tokens, which are tokenised in
context as FastChat does (``models.chat.answer_ids``).

Example:
    >>> maps = list(detector_maps(detector, frames, n=4))          # doctest: +SKIP
    >>> losses = train_chat(chat, examples, steps=100)             # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.chat import IMAGE_PLACEHOLDER, BatteryChat, answer_ids
from models.data.poisson import SyntheticDefectSet
from models.detector import BatteryDetector


@dataclass
class Example:
    """One training item: the model input, the detector's map, the prompt and the answer."""

    image: torch.Tensor  # [3, S, S], as the station preprocesses a frame
    amap: torch.Tensor  # [S, S], the detector's anomaly map
    prompt: str  # the station's prompt, ``<ImageHere>`` where the image tokens go
    answer: str
    verdict: str  # "pass" | "fail", from the facts


@torch.no_grad()
def detector_maps(
    detector: BatteryDetector,
    images: Sequence[np.ndarray],
    n: int,
    seed: int,
    bit_depth: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
    """``n`` model inputs from ``images`` (half with a synthetic defect), each with the
    detector's map ``[S, S]`` (on the CPU) and image score.

    Args:
        detector: the bundle's detector (its map is what the chat sees at the station).
        images: normal frames as read from disk.
        n: how many inputs.
        seed: seed of the synthetic defects.
        bit_depth: the recipe's bit depth of the frames (None: from their dtype).
    """
    data = SyntheticDefectSet(images, detector.image_size, n, seed, bit_depth=bit_depth)
    device = detector.text_embeddings.device
    for i in range(n):
        x, _, _ = data[i]
        amap, score = detector(x[None].to(device))
        yield x, amap[0].float().cpu(), float(score[0])


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
        examples: cycled through in a seeded random order (the explainer's
            ``inspector.explain.chat_teacher`` writes them on ``detector_maps``).
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

