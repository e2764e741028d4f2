"""The ``openai`` writer: any OpenAI-compatible chat server over HTTP.

llama.cpp's server, vLLM and Ollama all speak ``POST {base_url}/chat/completions``. The facts
go into the system message; where the server takes images, the overlay picture (heat map and
numbered boxes) goes with the first question as a PNG data URL. A server that refuses the
image (HTTP 400/415/422) is asked again without it, and is not sent images again.
"""

from __future__ import annotations

import base64
import os

import httpx

from inspector.explain.writers.base import (
    ChatTurn,
    ExplanationWriter,
    RejectContext,
    WriterError,
    system_prompt,
)
from inspector.explain.writers.settings import OpenAISettings

IMAGE_REFUSED = (400, 415, 422)


class OpenAIWriter(ExplanationWriter):
    """Chat completions from an OpenAI-compatible server (one HTTP request per answer)."""

    name = "openai"

    def __init__(self, settings: OpenAISettings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.client = client or httpx.Client(
            base_url=settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=settings.timeout_s,
        )
        self.images_ok = settings.send_image

    def messages(
        self, ctx: RejectContext, history: list[ChatTurn], question: str, image: bool
    ) -> list[dict]:
        """System message with the facts, then the turns; the image joins the first question."""
        png = ctx.overlay_png() if image else None
        turns = [*history, {"role": "user", "text": question}]
        out: list[dict] = [{"role": "system", "content": system_prompt(ctx.facts)}]
        for i, turn in enumerate(turns):
            role = "assistant" if turn["role"] == "assistant" else "user"
            content: str | list[dict] = turn["text"]
            if png is not None and i == 0 and role == "user":
                url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
                content = [
                    {"type": "text", "text": turn["text"]},
                    {"type": "image_url", "image_url": {"url": url}},
                ]
            out.append({"role": role, "content": content})
        return out

    def _post(self, messages: list[dict]) -> httpx.Response:
        body = {
            "model": self.settings.model,
            "messages": messages,
            "max_tokens": self.settings.max_tokens,
            "temperature": self.settings.temperature,
        }
        try:
            return self.client.post("chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise WriterError(f"chat server {self.settings.base_url} unreachable: {exc}") from exc

    def reply(self, ctx: RejectContext, history: list[ChatTurn], question: str) -> str:
        with_image = self.images_ok and ctx.image is not None and ctx.amap is not None
        resp = self._post(self.messages(ctx, history, question, with_image))
        if with_image and resp.status_code in IMAGE_REFUSED:
            self.images_ok = False  # a text-only model: stop sending pictures
            resp = self._post(self.messages(ctx, history, question, False))
        if resp.status_code != 200:
            raise WriterError(
                f"chat server answered HTTP {resp.status_code}: {resp.text[:200].strip()}"
            )
        try:
            text = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise WriterError(f"chat server reply is not a chat completion: {exc!r}") from exc
        if not isinstance(text, str) or not text.strip():
            raise WriterError("chat server gave an empty answer")
        return text.strip()

    def close(self) -> None:
        self.client.close()
