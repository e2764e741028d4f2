"""``inspector serve`` as a user starts it: a real uvicorn on localhost over a real store."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from tests.cli_helpers import run_inspector
from tests.inspector.web.conftest import SERVE_TOKEN as TOKEN
from tests.inspector.web.conftest import write_config


def raw_get(url: str, path: str) -> bytes:
    """Send ``GET path`` byte for byte (no client-side clean-up of ``..``); the response."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        sock.sendall((request + "Connection: close\r\n\r\n").encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_serve_binds_localhost_needs_the_token_and_refuses_traversal(server: str) -> None:
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    assert httpx.get(server + "/rejects").status_code == 401
    page = httpx.get(server + "/rejects", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200 and "cell-001" in page.text
    for path in ("/static/../../../../etc/passwd", "/rejects/../../etc/passwd", "/static/.."):
        response = raw_get(server, path)
        assert response.startswith(b"HTTP/1.1 404"), (path, response[:80])
        assert b"root:" not in response


def test_serve_without_a_token_says_so_in_one_line(tmp_path: Path) -> None:
    done = run_inspector("serve", "--config", str(write_config(tmp_path)))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "INSPECTOR_WEB_TEST_TOKEN" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
