"""The openai writer against a small OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from inspector.explain.facts import facts_from_map
from inspector.explain.writers import RejectContext, WriterError
from inspector.explain.writers.openai import OpenAIWriter
from inspector.explain.writers.settings import OpenAISettings
from models.recipe import Thresholds
from tests.conftest import textured


class ChatServer(ThreadingHTTPServer):
    """Speaks ``POST /v1/chat/completions``; records requests; may refuse images or fail."""

    def __init__(self, refuse_images: bool = False, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []
        self.headers_seen: list[dict] = []
        self.refuse_images = refuse_images
        self.status = status

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802  (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        self.server.headers_seen.append(dict(self.headers))
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": "not found"})
        if self.server.status != 200:
            return self._send(self.server.status, {"error": {"message": "model overloaded"}})
        has_image = any(isinstance(m["content"], list) for m in body["messages"])
        if has_image and self.server.refuse_images:
            return self._send(400, {"error": {"message": "image input is not supported"}})
        n_user = sum(m["role"] == "user" for m in body["messages"])
        answer = f"answer {n_user} from {body['model']}"
        self._send(
            200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}
        )


@pytest.fixture()
def server(request) -> Iterator[ChatServer]:
    srv = ChatServer(**getattr(request, "param", {}))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def context() -> RejectContext:
    amap = np.zeros((120, 160), np.float32)
    amap[10:30, 70:90] = 0.9
    return RejectContext(
        facts_from_map(amap, Thresholds(), 0.1, "pouch cell"), textured(120, 160), amap
    )


def test_facts_image_and_history_reach_the_server(server: ChatServer, monkeypatch) -> None:
    monkeypatch.setenv("TEST_CHAT_KEY", "sekret")
    writer = OpenAIWriter(
        OpenAISettings(base_url=server.base_url, model="vicuna-7b", api_key_env="TEST_CHAT_KEY")
    )
    ctx = context()
    first = writer.explain(ctx)
    history = [
        {"role": "user", "text": "Is there any anomaly?"},
        {"role": "assistant", "text": first},
    ]
    second = writer.reply(ctx, history, "How big is it?")

    assert (first, second) == ("answer 1 from vicuna-7b", "answer 2 from vicuna-7b")
    assert server.headers_seen[0]["Authorization"] == "Bearer sekret"
    system, user = server.requests[0]["messages"]
    assert system["role"] == "system" and "Region 1: upper centre" in system["content"]
    text_part, image_part = user["content"]
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    png = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), 1)
    assert png is not None and png.shape[1] >= 160  # the overlay picture
    roles = [m["role"] for m in server.requests[1]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert server.requests[1]["messages"][2]["content"] == first


@pytest.mark.parametrize("server", [{"refuse_images": True}], indirect=True)
def test_a_text_only_server_is_asked_again_without_the_image(server: ChatServer) -> None:
    writer = OpenAIWriter(OpenAISettings(base_url=server.base_url))
    assert writer.explain(context()) == "answer 1 from default"
    assert [isinstance(r["messages"][1]["content"], list) for r in server.requests] == [True, False]
    writer.explain(context())
    assert len(server.requests) == 3  # no image offered again


@pytest.mark.parametrize("server", [{"status": 503}], indirect=True)
def test_a_failing_server_is_a_writer_error(server: ChatServer) -> None:
    writer = OpenAIWriter(OpenAISettings(base_url=server.base_url, send_image=False))
    with pytest.raises(WriterError, match="HTTP 503"):
        writer.explain(context())


def test_an_unreachable_server_is_a_writer_error() -> None:
    srv = ChatServer()
    url = srv.base_url
    srv.server_close()  # the port is free again: nothing listens
    writer = OpenAIWriter(OpenAISettings(base_url=url, timeout_s=5))
    with pytest.raises(WriterError, match="unreachable"):
        writer.explain(context())


def test_the_overlay_of_a_large_frame_is_sent_at_most_1024_px_wide() -> None:
    amap = np.zeros((1500, 2400), np.float32)
    amap[100:300, 1100:1300] = 0.9
    ctx = RejectContext(facts_from_map(amap, Thresholds()), textured(1500, 2400), amap)
    png = cv2.imdecode(np.frombuffer(ctx.overlay_png(), np.uint8), 1)
    assert max(png.shape[:2]) == 1024
