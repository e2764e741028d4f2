"""The ``explainer`` section: which writer explains rejects (a name of ``WRITERS``), and how.

Example YAML::

    explainer:
      backend: openai            # a writer of inspector.explain.writers.WRITERS
      openai:
        base_url: http://127.0.0.1:8080/v1
        model: vicuna-13b-v1.5
        api_key_env: OPENAI_API_KEY
      retry: {max_attempts: 3, backoff_s: 10}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from inspector.core.config_base import ConfigSection
from inspector.explain.writers import WRITERS
from inspector.explain.writers.settings import BatteryGPTSettings, OpenAISettings


class RetrySettings(ConfigSection):
    """A failing job is retried with exponential back-off, then explained by the template."""

    max_attempts: int = Field(3, ge=1, description="attempts with the chosen backend")
    backoff_s: float = Field(5.0, ge=0.0, description="Wait after the first failed attempt.")
    backoff_factor: float = Field(2.0, ge=1.0, description="Each later wait is this much longer.")
    max_backoff_s: float = Field(300.0, ge=0.0, description="Longest wait between attempts.")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_backoff_s, self.backoff_s * self.backoff_factor ** (attempt - 1))


class ExplainerConfig(ConfigSection):
    """How rejects are explained (the ``explainer`` section; defaults need nothing)."""

    backend: Literal[tuple(WRITERS)] = Field(
        "template", description="Who writes explanations; template needs no language model."
    )
    openai: OpenAISettings = Field(
        default_factory=OpenAISettings, description="Used when backend is openai."
    )
    batterygpt: BatteryGPTSettings = Field(
        default_factory=BatteryGPTSettings, description="Used when backend is batterygpt."
    )
    retry: RetrySettings = Field(
        default_factory=RetrySettings, description="Retries before the template takes over."
    )
    poll_interval_s: float = Field(1.0, gt=0, description="wait between empty queue checks")
    check_facts: bool = Field(
        True, description="replace a model's explanation that contradicts the facts"
    )

    def resolve_paths(self, base: Path) -> ExplainerConfig:
        """Make the batterygpt paths absolute, relative to ``base`` (the config's folder)."""
        bg = self.batterygpt
        for name in ("llm_path", "chat_weights", "bundle"):
            value = getattr(bg, name)
            if value is not None and not value.is_absolute():
                setattr(bg, name, (Path(base) / value).expanduser())
        return self

    @model_validator(mode="after")
    def _backend_is_configured(self) -> ExplainerConfig:
        if self.backend == "batterygpt" and self.batterygpt.llm_path is None:
            raise ValueError(
                "backend 'batterygpt' needs batterygpt.llm_path (a local model folder)"
            )
        return self
