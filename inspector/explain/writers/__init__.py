"""Explanation writers behind one interface; ``create_backend`` picks one from the config.

``WRITERS`` is the one list of writer names: the ``explainer.backend`` values derive from it.
A new writer is one module here and one row. Torch and transformers are imported only by the
``batterygpt`` writer, httpx only by ``openai``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from inspector.explain.grounding import contradictions
from inspector.explain.writers.base import (
    INITIAL_QUESTION,
    Backend,
    BackendError,
    ChatTurn,
    RejectContext,
)
from inspector.explain.writers.template import TemplateBackend

if TYPE_CHECKING:  # the explainer section derives its names from WRITERS: no import back
    from inspector.explain.config import ExplainerConfig


def _template(cfg: ExplainerConfig, bundle: str | Path | None) -> Backend:
    return TemplateBackend()


def _openai(cfg: ExplainerConfig, bundle: str | Path | None) -> Backend:
    from inspector.explain.writers.openai_backend import OpenAIBackend  # httpx: only when used

    return OpenAIBackend(cfg.openai)


def _batterygpt(cfg: ExplainerConfig, bundle: str | Path | None) -> Backend:
    from inspector.explain.writers.batterygpt import BatteryGPTBackend  # torch, transformers

    return BatteryGPTBackend.from_settings(cfg.batterygpt, bundle)


#: Writer name -> what builds it from the ``explainer`` section (and the station's bundle).
WRITERS: dict[str, Callable[[ExplainerConfig, str | Path | None], Backend]] = {
    "template": _template,
    "openai": _openai,
    "batterygpt": _batterygpt,
}


def create_backend(cfg: ExplainerConfig, bundle: str | Path | None = None) -> Backend:
    """The writer named by ``cfg.backend`` (``bundle``: the station's, for batterygpt)."""
    return WRITERS[cfg.backend](cfg, bundle)


__all__ = [
    "INITIAL_QUESTION",
    "WRITERS",
    "Backend",
    "BackendError",
    "ChatTurn",
    "RejectContext",
    "TemplateBackend",
    "contradictions",
    "create_backend",
]
