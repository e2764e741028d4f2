"""Explanation writers behind one interface; ``create_writer`` picks one from the config.

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
    ChatTurn,
    ExplanationWriter,
    RejectContext,
    WriterError,
)
from inspector.explain.writers.template import TemplateWriter

if TYPE_CHECKING:  # the explainer section derives its names from WRITERS: no import back
    from inspector.explain.config import ExplainerConfig


def _template(cfg: ExplainerConfig, bundle: str | Path | None) -> ExplanationWriter:
    return TemplateWriter()


def _openai(cfg: ExplainerConfig, bundle: str | Path | None) -> ExplanationWriter:
    from inspector.explain.writers.openai import OpenAIWriter  # httpx: only when used

    return OpenAIWriter(cfg.openai)


def _batterygpt(cfg: ExplainerConfig, bundle: str | Path | None) -> ExplanationWriter:
    from inspector.explain.writers.batterygpt import BatteryGPTWriter  # torch, transformers

    return BatteryGPTWriter.from_settings(cfg.batterygpt, bundle)


#: Writer name -> what builds it from the ``explainer`` section (and the station's bundle).
WRITERS: dict[str, Callable[[ExplainerConfig, str | Path | None], ExplanationWriter]] = {
    "template": _template,
    "openai": _openai,
    "batterygpt": _batterygpt,
}


def create_writer(cfg: ExplainerConfig, bundle: str | Path | None = None) -> ExplanationWriter:
    """The writer named by ``cfg.backend`` (``bundle``: the station's, for batterygpt)."""
    return WRITERS[cfg.backend](cfg, bundle)


__all__ = [
    "INITIAL_QUESTION",
    "WRITERS",
    "ExplanationWriter",
    "WriterError",
    "ChatTurn",
    "RejectContext",
    "TemplateWriter",
    "contradictions",
    "create_writer",
]
