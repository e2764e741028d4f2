"""The settings of the writers that need any: the ``explainer.openai`` and ``.batterygpt`` keys.

Plain data, no HTTP client and no torch, so the config reads them on any box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from inspector.core.config_base import ConfigSection


class OpenAISettings(ConfigSection):
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


class BatteryGPTSettings(ConfigSection):
    """The paper's chat: a local Vicuna-style model with image and anomaly-map tokens."""

    llm_path: Path | None = Field(
        None, description="local folder of a transformers causal LM (Vicuna v1.5 by default)"
    )
    chat_weights: Path | None = Field(
        None, description="prompt learner + projection trained by inspector.explain.chat_teacher"
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
