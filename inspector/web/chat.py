"""The page's default answerer: the explainer's template backend, which needs no model.

Used by ``inspector serve`` when no language-model chat function is given. It answers from the
reject's stored result (regions, sizes, scores), so it works without the image or map files.
"""

from __future__ import annotations


def template_chat(reject: dict, history: list[dict], question: str) -> str:
    """Answer ``question`` about ``reject`` from its measured facts, with fixed sentences.

    Args:
        reject: the store's reject record with its result payload folded in.
        history: earlier turns of this reject's chat (``{role, text, ...}``).
        question: the technician's question.
    """
    from inspector.explain.backends.base import RejectContext
    from inspector.explain.backends.template import TemplateBackend
    from inspector.explain.facts import facts_from_result

    result = reject.get("result") if isinstance(reject.get("result"), dict) else reject
    facts = facts_from_result({**result, "product": reject.get("product") or result.get("product")})
    turns = [{"role": t["role"], "text": t["text"]} for t in history]
    return TemplateBackend().reply(RejectContext(facts), turns, question)
