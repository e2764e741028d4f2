"""Explanation backends behind one interface; ``create_backend`` picks one from the config."""

from __future__ import annotations

from pathlib import Path

from inspector.explain.config import ExplainerConfig
from inspector.explain.grounding import contradictions
from inspector.explain.writers.base import (
    INITIAL_QUESTION,
    Backend,
    BackendError,
    ChatTurn,
    RejectContext,
)
from inspector.explain.writers.template import TemplateBackend


def create_backend(cfg: ExplainerConfig, bundle: str | Path | None = None) -> Backend:
    """The backend named by ``cfg.backend`` (``bundle``: the station's, for batterygpt)."""
    if cfg.backend == "openai":
        from inspector.explain.writers.openai_backend import OpenAIBackend

        return OpenAIBackend(cfg.openai)
    if cfg.backend == "batterygpt":
        from inspector.explain.writers.batterygpt import BatteryGPTBackend

        return BatteryGPTBackend.from_settings(cfg.batterygpt, bundle)
    return TemplateBackend()


__all__ = [
    "INITIAL_QUESTION",
    "Backend",
    "BackendError",
    "ChatTurn",
    "RejectContext",
    "TemplateBackend",
    "contradictions",
    "create_backend",
]
