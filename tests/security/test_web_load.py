"""The technicians' page as ``inspector serve`` runs it, under load that froze it before:
chat questions to a language model server that never answers, and half-sent requests.
``/health`` and the reject list keep answering."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import resource
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from inspector.store.db import Store
from inspector.web.server import HEADER_TIMEOUT_S
from tests.broker import free_port
from tests.cli_helpers import INSPECTOR
from tests.inspector.explain.test_worker import record_reject

TOKEN = "tok-load-5"
CHAT_TIMEOUT_S = 3.0
OPEN_FILES = 256  # the server's limit: more half-sent requests than it has file handles
HALF_SENT = 320


class SilentServer:
    """Accepts connections and never says a word: a hung language model server."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def get(url: str, timeout: float, token: bool = True) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def ask(url: str, timeout: float) -> int:
    req = urllib.request.Request(
        url,
        data=b"question=how+big+is+it",
        headers={"Authorization": f"Bearer {TOKEN}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


@pytest.fixture(scope="module")
def served_page(
    tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``inspector serve`` with a reject ``f1``, the openai backend on a silent server, and
    no more than ``OPEN_FILES`` file handles."""
    tmp = tmp_path_factory.mktemp("page")
    store = Store(tmp / "data")
    record_reject(store, "f1", (10, 10, 30, 30))
    store.close()
    llm = SilentServer()
    port = free_port()
    cfg = {
        "station": {"line": "L1", "station": "S1"},
        "data_dir": str(tmp / "data"),
        "bundle": str(tiny_bundle),
        "source": {"kind": "hotfolder", "folder": str(tmp / "incoming")},
        "mqtt": {"enabled": False},
        "health": {"metrics_port": None, "log_format": "text"},
        "web": {"port": port, "chat_timeout_s": CHAT_TIMEOUT_S},
        "explainer": {
            "backend": "openai",
            "openai": {"base_url": f"http://127.0.0.1:{llm.port}/v1", "timeout_s": 600},
        },
    }
    config = tmp / "station.yaml"
    config.write_text(yaml.safe_dump(cfg))
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen(
        [INSPECTOR, "serve", "--config", str(config)],
        stdout=log,
        stderr=log,
        env={**os.environ, "INSPECTOR_WEB_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"},
        preexec_fn=_limit_files,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # started when /health answers
            assert proc.poll() is None, (tmp / "serve.log").read_text()
            try:
                if get(base + "/health", 1, token=False) == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, "the page did not start"
                # pace the retries by waiting on the process: an early exit shows at once
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        llm.close()


@pytest.mark.slow
def test_chat_with_a_hung_model_does_not_freeze_the_page(served_page) -> None:
    page, _ = served_page
    with concurrent.futures.ThreadPoolExecutor(45) as pool:
        started = time.monotonic()
        questions = [pool.submit(ask, page + "/rejects/f1/chat", 60) for _ in range(45)]
        # meanwhile the rest of the page answers at once
        assert get(page + "/health", 2, token=False) == 200
        assert get(page + "/rejects", 2) == 200
        assert get(page + "/rejects/f1", 2) == 200
        codes = [q.result() for q in questions]
    # every question gets an answer page: busy (503) or no answer in time (504)
    assert set(codes) <= {503, 504}, codes
    assert 504 in codes
    assert time.monotonic() - started < 45 * CHAT_TIMEOUT_S


@pytest.mark.slow
def test_half_sent_requests_do_not_starve_health(served_page) -> None:
    page, _ = served_page
    host, port = page.removeprefix("http://").split(":")
    idle = []
    try:
        for _ in range(HALF_SENT):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /rejects HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            idle.append(s)
        deadline = time.monotonic() + 3 * HEADER_TIMEOUT_S
        while True:
            try:
                if get(page + "/health", 2, token=False) == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "/health starved by half-sent requests"
    finally:
        for s in idle:
            s.close()
    assert get(page + "/rejects", 5) == 200


@pytest.mark.slow
def test_sighup_leaves_the_page_running(served_page: tuple[str, subprocess.Popen]) -> None:
    base, proc = served_page
    proc.send_signal(signal.SIGHUP)
    assert get(base + "/health", 5, token=False) == 200
    assert proc.poll() is None
