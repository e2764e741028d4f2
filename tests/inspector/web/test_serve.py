"""``inspector serve`` as a user starts it: a real uvicorn on localhost over a real store."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inspector.store import Store
from tests.cli_helpers import INSPECTOR, run_inspector

TOKEN = "serve-token-51"
CONFIG = """\
station: {line: L1, station: S1}
data_dir: data
bundle: bundle
source: {kind: video, url: line.mp4}
web: {token_env: INSPECTOR_WEB_TEST_TOKEN}
"""


def write_config(folder: Path) -> Path:
    path = folder / "inspector.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture()
def server(tmp_path: Path, store: Store) -> Iterator[str]:
    """``inspector serve`` on a free port over the test store's data directory; yields its URL."""
    store.close()
    (tmp_path / "bundle").mkdir()
    env = {**os.environ, "INSPECTOR_WEB_TEST_TOKEN": TOKEN, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [INSPECTOR, "serve", "--config", str(write_config(tmp_path)), "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    url, seen = None, []
    try:
        while url is None:
            line = lines.get(timeout=60)
            seen.append(line)
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        yield url
    except queue.Empty:
        pytest.fail("inspector serve did not start:\n" + "".join(seen))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
