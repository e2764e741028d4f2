"""The ``explainer`` section of the station config: which backend explains rejects, and how.

Example YAML::

    explainer:
      backend: openai            # template | openai | batterygpt
      openai:
        base_url: http://127.0.0.1:8080/v1
        model: vicuna-13b-v1.5
        api_key_env: OPENAI_API_KEY
      retry: {max_attempts: 3, backoff_s: 10}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAISettings(_Strict):
    """Any OpenAI-compatible chat server (llama.cpp server, vLLM, Ollama, ...)."""

    base_url: str = Field("http://127.0.0.1:8080/v1", description="up to and including /v1")
    model: str = Field("default", description="Model name the server knows.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="environment variable holding the API key (may be unset)"
    )
    timeout_s: float = Field(60.0, gt=0, description="Give up on one request after this.")
    send_image: bool = Field(True, description="attach the overlay PNG (vision models)")
    max_tokens: int = Field(400, gt=0, description="Longest answer, in tokens.")
    temperature: float = Field(0.2, ge=0.0, le=2.0, description="Sampling temperature.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {v!r}")
        return v


class BatteryGPTSettings(_Strict):
    """The paper's chat: a local Vicuna-style model with image and anomaly-map tokens."""

    llm_path: Path | None = Field(
        None, description="local folder of a transformers causal LM (Vicuna v1.5 by default)"
    )
    chat_weights: Path | None = Field(
        None, description="prompt learner + projection trained by models.training.chat_training"
    )
    bundle: Path | None = Field(
        None, description="bundle whose encoder initialises image encoder 2 (station's if unset)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present.")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="auto: float16 on CUDA, float32 on the CPU."
    )
    max_new_tokens: int = Field(256, gt=0, description="Longest answer, in tokens.")
    stop_strings: list[str] = Field(
        default_factory=lambda: ["</s>", "USER:", "###"],
        description="Generation stops at the first of these.",
    )
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy")
    template: Literal["vicuna_v1", "vicuna_v0"] = Field(
        "vicuna_v1",
        description="prompt format: vicuna_v1 (v1.1/v1.5) or vicuna_v0 (AnomalyGPT's weights)",
    )


class RetrySettings(_Strict):
    """A failing job is retried with exponential back-off, then explained by the template."""

    max_attempts: int = Field(3, ge=1, description="attempts with the chosen backend")
    backoff_s: float = Field(5.0, ge=0.0, description="Wait after the first failed attempt.")
    backoff_factor: float = Field(2.0, ge=1.0, description="Each later wait is this much longer.")
    max_backoff_s: float = Field(300.0, ge=0.0, description="Longest wait between attempts.")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_backoff_s, self.backoff_s * self.backoff_factor ** (attempt - 1))


class ExplainerConfig(_Strict):
    """How rejects are explained (the ``explainer`` section; defaults need nothing)."""

    backend: Literal["template", "openai", "batterygpt"] = Field(
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
