"""The interface every explanation writer implements, and what it is given."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TypedDict

import cv2
import numpy as np

from inspector.explain.facts import Facts
from inspector.vision.overlay import render_overlay

INITIAL_QUESTION = "Is there any anomaly in this image? Describe each defect: where, how big, what."
SYSTEM_PROMPT = (
    "You are an inspection assistant on a lithium-ion battery cell production line. A "
    "technician asks about a cell the anomaly detector rejected. The measured facts below are "
    "the ground truth: never contradict them, never invent regions, and give sizes from them. "
    "Answer briefly and concretely."
)


class WriterError(RuntimeError):
    """A writer could not produce an answer (server down, model missing, bad reply).

    ``permanent`` marks failures a retry cannot cure (e.g. the reject has no stored image):
    the worker then explains from the facts at once instead of backing off.
    """

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ChatTurn(TypedDict):
    """One message of a reject's chat: ``role`` is ``"user"`` or ``"assistant"``."""

    role: str
    text: str


@dataclass
class RejectContext:
    """One reject as the writers see it: facts always; image and map when stored."""

    facts: Facts
    image: np.ndarray | None = None  # the frame as inspected
    amap: np.ndarray | None = None  # float32 map at the frame's resolution

    def overlay_png(self, max_side: int = 1024) -> bytes | None:
        """The technicians' overlay picture (heat map, numbered boxes) as PNG bytes, scaled
        down to ``max_side`` pixels (vision models see about that much anyway)."""
        if self.image is None or self.amap is None:
            return None
        picture = render_overlay(self.image, self.amap, self.facts.decision())
        h, w = picture.shape[:2]
        if max(h, w) > max_side:
            f = max_side / max(h, w)
            size = (max(1, round(w * f)), max(1, round(h * f)))
            picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".png", picture)
        return buf.tobytes() if ok else None


def system_prompt(facts: Facts) -> str:
    """The system prompt every language-model writer uses: role, rules and the facts."""
    return f"{SYSTEM_PROMPT}\n\nMeasured facts:\n{facts.to_prompt()}"


class ExplanationWriter(ABC):
    """Answers questions about a reject; the first explanation is the answer to
    ``INITIAL_QUESTION`` with no history."""

    name: str = "base"

    @abstractmethod
    def reply(self, ctx: RejectContext, history: list[ChatTurn], question: str) -> str:
        """The answer to ``question`` given the earlier turns of this reject's chat.

        Raises:
            WriterError: no answer could be produced.
        """

    def explain(self, ctx: RejectContext) -> str:
        """The explanation stored with a reject."""
        return self.reply(ctx, [], INITIAL_QUESTION)

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release models or connections."""
