"""The ``batterygpt`` writer: the paper's chat on a local Vicuna-style model.

The frame and its anomaly map become 19 input embeddings (``models.chat``); the region facts
go into the system prompt, so the model's words are grounded in what was measured.
``chat_prompt`` is the one place the prompt is written: chat training
(``inspector.explain.chat_teacher``) builds its prompts with it too, so the model is trained on
exactly the text it is asked with.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import torch

from inspector.explain.facts import Facts
from inspector.explain.writers.base import (
    ChatTurn,
    ExplanationWriter,
    RejectContext,
    WriterError,
    system_prompt,
)
from inspector.explain.writers.settings import BatteryGPTSettings
from models.chat import DEFAULT_TEMPLATE, BatteryChat, build_prompt
from models.preprocess import preprocess
from models.recipe import load_recipe


def chat_prompt(
    facts: Facts, history: list[ChatTurn], question: str, template: str = DEFAULT_TEMPLATE
) -> str:
    """The full prompt of one turn: the system prompt with the facts, the earlier turns and
    the question, in the chat template (``<ImageHere>`` where the image tokens go)."""
    turns = [{"role": t["role"], "text": t["text"]} for t in history]
    return build_prompt(system_prompt(facts), turns, question, template)


class BatteryGPTWriter(ExplanationWriter):
    """Answers with ``models.chat.BatteryChat``; needs the reject's image and map."""

    name = "batterygpt"

    def __init__(self, chat: BatteryChat, bit_depth: int | None = None) -> None:
        self.chat = chat
        self.bit_depth = bit_depth
        self.last_reply = None  # the last ChatReply (prompt, token counts, stop reason)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: BatteryGPTSettings, bundle: str | Path | None = None
    ) -> BatteryGPTWriter:
        """Load the LM from ``settings.llm_path`` and encoder 2 from the bundle's encoder."""
        from models.bundle import load_detector  # the backbones (open_clip, timm, transformers)

        bundle = settings.bundle or bundle
        if bundle is None:
            raise ValueError("batterygpt needs a bundle (its encoder initialises encoder 2)")
        if settings.llm_path is None:
            raise ValueError("batterygpt needs batterygpt.llm_path (a local model folder)")
        encoder = load_detector(bundle).encoder
        chat = BatteryChat.from_pretrained(
            settings.llm_path,
            encoder,
            chat_weights=settings.chat_weights,
            device=settings.device,
            dtype=settings.dtype,
            max_new_tokens=settings.max_new_tokens,
            stop_strings=settings.stop_strings,
            temperature=settings.temperature,
            template=settings.template,
        )
        return cls(chat, load_recipe(bundle).bit_depth)

    def reply(self, ctx: RejectContext, history: list[ChatTurn], question: str) -> str:
        if ctx.image is None or ctx.amap is None:
            raise WriterError("batterygpt needs the reject's image and anomaly map", permanent=True)
        size = self.chat.vision.encoder.image_size
        image = torch.from_numpy(preprocess(ctx.image, size, self.bit_depth))
        amap = cv2.resize(ctx.amap.astype("float32"), (size, size), interpolation=cv2.INTER_AREA)
        with self._lock:  # one answer at a time on the GPU (the web page may ask in parallel)
            try:
                reply = self.chat.reply_to(
                    image,
                    torch.from_numpy(amap),
                    lambda turns: chat_prompt(ctx.facts, turns, question, self.chat.template),
                    history,
                )
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                raise WriterError(f"out of GPU memory: {exc}") from exc
            self.last_reply = reply
        if not reply.text:
            raise WriterError(f"the model gave an empty answer (stopped at {reply.stop_reason})")
        return reply.text

    def close(self) -> None:
        self.chat = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
