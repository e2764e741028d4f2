"""Answering technicians' questions about a reject with the explainer's writers.

``ExplainerChat`` is what ``inspector serve`` uses: it gives the writer the station's
``explainer`` section names (loaded on the first question) the same facts, frame and map the
explanation worker gave it (``inspector.explain.worker.reject_context``), checks its answer
against the facts as the worker does, and lets the template writer answer when there is no
language model, it fails or it contradicts the facts, so a question always gets an answer that
agrees with the explanation. ``template_chat`` is the minimal form: facts from the stored
result alone, no files, no model.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from inspector.explain import worker
from inspector.explain.facts import facts_from_result
from inspector.explain.writers import RejectContext, TemplateWriter, WriterError
from inspector.web.pictures import stored_file
from inspector.web.present import result_of

log = logging.getLogger(__name__)

CONTEXT_CACHE = 8  # rejects whose decoded frame, map and facts are kept (a chat is on a few)


def _turns(history: list[dict]) -> list[dict]:
    return [{"role": t["role"], "text": t["text"]} for t in history]


def template_chat(reject: dict, history: list[dict], question: str) -> str:
    """Answer ``question`` about ``reject`` from its stored result, with fixed sentences.

    Args:
        reject: the store's reject record (its result payload nested or folded in).
        history: earlier turns of this reject's chat (``{role, text, ...}``).
        question: the technician's question.
    """
    ctx = RejectContext(facts_from_result(result_of(reject)))
    return TemplateWriter().reply(ctx, _turns(history), question)


class ExplainerChat:
    """A ``chat_fn`` over the explainer's writer, with the template writer as the fallback.

    Args:
        data_dir: the store's data directory; frames and maps outside it are not read.
        make_writer: builds the language-model writer on first use; None: template only.
        recipe: the station bundle's recipe (pixel pitch for mm, product noun); optional.
        check_facts: replace an answer that contradicts the facts with the template's
            (``explainer.check_facts``).

    Example:
        >>> from inspector.explain.writers import create_writer
        >>> chat = ExplainerChat(data_dir, lambda: create_writer(cfg.explainer, cfg.bundle))
        >>> chat(store.reject("f-1"), [], "How big is it?")  # doctest: +SKIP
    """

    def __init__(
        self,
        data_dir: Path,
        make_writer: Callable[[], object] | None = None,
        recipe: object | None = None,
        check_facts: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.recipe = recipe
        self.check_facts = check_facts
        self._make = make_writer
        self._writer = None
        self._load_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._contexts: OrderedDict[str, RejectContext] = OrderedDict()

    def context(self, reject: dict) -> RejectContext:
        """The facts (measured on the map where stored), frame and map of one reject.

        Kept for the last ``CONTEXT_CACHE`` rejects: a reject never changes, and decoding its
        frame and map again for every question of a chat would be wasted.
        """
        frame_id = reject.get("frame_id")
        with self._cache_lock:
            if frame_id in self._contexts:
                self._contexts.move_to_end(frame_id)
                return self._contexts[frame_id]
        ctx = self._measure(reject)
        if frame_id is not None:
            with self._cache_lock:
                self._contexts[frame_id] = ctx
                while len(self._contexts) > CONTEXT_CACHE:
                    self._contexts.popitem(last=False)
        return ctx

    def _measure(self, reject: dict) -> RejectContext:
        result = result_of(reject)
        try:
            return worker.reject_context(
                result,
                stored_file(self.data_dir, reject.get("image_path")),
                stored_file(self.data_dir, reject.get("map_path")),
                self.recipe,
            )
        except Exception:  # a malformed record still has its verdict's own facts
            log.exception("could not measure reject %s; using its result", reject.get("frame_id"))
            return RejectContext(facts_from_result(result))

    def _language_model(self):
        """The writer, built on the first question; None if there is none or it failed."""
        with self._load_lock:
            if self._writer is None and self._make is not None:
                make, self._make = self._make, None  # a failed load is not tried again
                try:
                    self._writer = make()
                except Exception:
                    log.exception("could not load the chat backend; the template answers")
            return self._writer

    def __call__(self, reject: dict, history: list[dict], question: str) -> str:
        ctx, turns = self.context(reject), _turns(history)
        writer = self._language_model()
        if writer is not None:
            try:
                answer = writer.reply(ctx, turns, question)
                return worker.check_answer(ctx.facts, answer) if self.check_facts else answer
            except WriterError as exc:
                log.warning("chat backend: %s; answering from the facts", exc)
            except Exception:  # any writer failure: the template still answers
                log.exception("chat backend failed; answering from the facts")
        return TemplateWriter().reply(ctx, turns, question)

    def close(self) -> None:
        """Release the writer's model or connection."""
        if self._writer is not None:
            self._writer.close()
