"""Answering technicians' questions about a reject with the explainer's backends.

``template_chat`` needs nothing (no model, no files) and is the fallback. ``BackendChat`` asks
the backend the station's ``explainer`` section names (loaded on the first question), giving it
the reject's facts and, where stored, its frame and map; when the backend fails the template
answers instead, so a question always gets an answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _result(reject: dict) -> dict:
    nested = reject.get("result")
    result = nested if isinstance(nested, dict) else reject
    return {**result, "product": reject.get("product") or result.get("product")}


def _turns(history: list[dict]) -> list[dict]:
    return [{"role": t["role"], "text": t["text"]} for t in history]


def template_chat(reject: dict, history: list[dict], question: str) -> str:
    """Answer ``question`` about ``reject`` from its measured facts, with fixed sentences.

    Args:
        reject: the store's reject record (its result payload nested or folded in).
        history: earlier turns of this reject's chat (``{role, text, ...}``).
        question: the technician's question.
    """
    from inspector.explain.backends import RejectContext, TemplateBackend
    from inspector.explain.facts import facts_from_result

    ctx = RejectContext(facts_from_result(_result(reject)))
    return TemplateBackend().reply(ctx, _turns(history), question)


class BackendChat:
    """A ``chat_fn`` over a language-model backend, falling back to the template answer.

    Example:
        >>> from inspector.explain.backends import create_backend
        >>> chat = BackendChat(lambda: create_backend(cfg.explainer, cfg.bundle), data_dir)
        >>> chat(store.reject("f-1"), [], "How big is it?")  # doctest: +SKIP
    """

    def __init__(self, make_backend: Callable[[], object], data_dir: Path) -> None:
        self._make = make_backend
        self._backend = None
        self._lock = threading.Lock()
        self.data_dir = Path(data_dir)

    def _load(self, reject: dict, key: str, reader: Callable[[Path], np.ndarray | None]):
        from inspector.web.pictures import PictureMissing, inside

        try:
            return reader(inside(self.data_dir, reject.get(key)))
        except (PictureMissing, OSError, ValueError):
            return None

    def __call__(self, reject: dict, history: list[dict], question: str) -> str:
        from inspector.explain.backends import RejectContext
        from inspector.explain.facts import facts_from_result
        from models.image_io import read_image

        ctx = RejectContext(
            facts_from_result(_result(reject)),
            image=self._load(reject, "image_path", read_image),
            amap=self._load(reject, "map_path", lambda p: np.load(p, allow_pickle=False)),
        )
        try:
            with self._lock:
                if self._backend is None:
                    self._backend = self._make()
                backend = self._backend
            return backend.reply(ctx, _turns(history), question)
        except Exception:  # any backend failure: the template still answers
            log.exception("chat backend failed; answering from the facts")
            return template_chat(reject, history, question)

    def close(self) -> None:
        """Release the backend's model or connection."""
        if self._backend is not None:
            self._backend.close()
