"""Answering technicians' questions about a reject with the explainer's backends.

``ExplainerChat`` is what ``inspector serve`` uses: it gives the backend the station's
``explainer`` section names (loaded on the first question) the same facts, frame and map the
explanation worker gave it (``inspector.explain.worker.reject_context``), and lets the template
backend answer when there is no language model or it fails, so a question always gets an
answer that agrees with the explanation. ``template_chat`` is the minimal form: facts from the
stored result alone, no files, no model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def _result(reject: dict) -> dict:
    nested = reject.get("result")
    result = nested if isinstance(nested, dict) else reject
    return {**result, "product": reject.get("product") or result.get("product")}


def _turns(history: list[dict]) -> list[dict]:
    return [{"role": t["role"], "text": t["text"]} for t in history]


def template_chat(reject: dict, history: list[dict], question: str) -> str:
    """Answer ``question`` about ``reject`` from its stored result, with fixed sentences.

    Args:
        reject: the store's reject record (its result payload nested or folded in).
        history: earlier turns of this reject's chat (``{role, text, ...}``).
        question: the technician's question.
    """
    from inspector.explain.backends import RejectContext, TemplateBackend
    from inspector.explain.facts import facts_from_result

    ctx = RejectContext(facts_from_result(_result(reject)))
    return TemplateBackend().reply(ctx, _turns(history), question)


class ExplainerChat:
    """A ``chat_fn`` over the explainer's backend, with the template backend as the fallback.

    Args:
        data_dir: the store's data directory; frames and maps outside it are not read.
        make_backend: builds the language-model backend on first use; None: template only.
        recipe: the station bundle's recipe (pixel pitch for mm, product noun); optional.

    Example:
        >>> from inspector.explain.backends import create_backend
        >>> chat = ExplainerChat(data_dir, lambda: create_backend(cfg.explainer, cfg.bundle))
        >>> chat(store.reject("f-1"), [], "How big is it?")  # doctest: +SKIP
    """

    def __init__(
        self,
        data_dir: Path,
        make_backend: Callable[[], object] | None = None,
        recipe: object | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.recipe = recipe
        self._make = make_backend
        self._backend = None
        self._lock = threading.Lock()

    def _checked(self, stored: object) -> Path | None:
        from inspector.web.pictures import PictureMissing, inside

        try:
            return inside(self.data_dir, stored)  # type: ignore[arg-type]
        except PictureMissing:
            return None

    def context(self, reject: dict):
        """The facts (measured on the map where stored), frame and map of one reject."""
        from inspector.explain.backends import RejectContext
        from inspector.explain.facts import facts_from_result
        from inspector.explain.worker import reject_context

        result = _result(reject)
        try:
            return reject_context(
                result,
                self._checked(reject.get("image_path")),
                self._checked(reject.get("map_path")),
                self.recipe,
            )
        except Exception:  # a malformed record still has its verdict's own facts
            log.exception("could not measure reject %s; using its result", reject.get("frame_id"))
            return RejectContext(facts_from_result(result))

    def __call__(self, reject: dict, history: list[dict], question: str) -> str:
        from inspector.explain.backends import TemplateBackend

        ctx, turns = self.context(reject), _turns(history)
        if self._make is not None:
            try:
                with self._lock:
                    if self._backend is None:
                        self._backend = self._make()
                    backend = self._backend
                return backend.reply(ctx, turns, question)
            except Exception:  # any backend failure: the template still answers
                log.exception("chat backend failed; answering from the facts")
        return TemplateBackend().reply(ctx, turns, question)

    def close(self) -> None:
        """Release the backend's model or connection."""
        if self._backend is not None:
            self._backend.close()
