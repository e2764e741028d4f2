"""The technicians' page over a real SQLite store: login, list, reject page, pictures, chat."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from inspector.config.web import CredentialsError, WebConfig
from inspector.store.db import Store
from inspector.web.app import create_app
from inspector.web.chat import template_chat
from tests.inspector.web.conftest import FRAME_SHAPE, HOSTILE_CELL

TOKEN = "tok-3f9a1c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HTML = {"Accept": "text/html"}


def settings(**kw) -> WebConfig:
    return WebConfig(token=SecretStr(TOKEN), token_env=None, **kw)


@pytest.fixture()
def client(store: Store) -> TestClient:
    return TestClient(create_app(store, template_chat, settings()), follow_redirects=False)


def decode_png(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, "not a PNG"
    return image


PROTECTED = [
    "/rejects",
    "/rejects/f-1",
    "/rejects/f-1/image",
    "/rejects/f-1/overlay",
    "/rejects/f-1/thumb",
    "/rejects/missing",
]


@pytest.mark.parametrize("path", PROTECTED)
def test_requests_without_credentials_are_refused(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    browser = client.get(path, headers=HTML)
    assert browser.status_code == 303
    assert browser.headers["location"].startswith("/login?next=")
    assert client.get(path, headers=AUTH).status_code in (200, 404)


def test_health_is_open_and_chat_needs_a_login(client: TestClient, store: Store) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    refused = client.post("/rejects/f-1/chat", data={"question": "How big is it?"})
    assert refused.status_code == 401
    assert store.chat_history("f-1") == []


def test_login_form_sets_a_cookie_that_opens_the_pages(client: TestClient) -> None:
    page = client.get("/login?next=/rejects/f-1")
    assert page.status_code == 200 and 'name="secret"' in page.text
    assert 'name="username"' not in page.text  # token only: no user name to type
    wrong = client.post("/login", data={"secret": "guess", "next": "/rejects/f-1"})
    assert wrong.status_code == 401 and "Wrong token" in wrong.text
    ok = client.post("/login", data={"secret": TOKEN, "next": "/rejects/f-1"})
    assert ok.status_code == 303 and ok.headers["location"] == "/rejects/f-1"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/rejects/f-1").status_code == 200  # the client keeps the cookie
    client.post("/logout")
    assert client.get("/rejects/f-1").status_code == 401


def test_repeated_wrong_logins_are_slowed_down(client: TestClient) -> None:
    codes = [client.post("/login", data={"secret": f"guess{i}"}).status_code for i in range(11)]
    assert codes == [401] * 10 + [429]
    assert client.post("/login", data={"secret": TOKEN}).status_code == 429


def test_login_never_redirects_off_site(client: TestClient) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        ok = client.post("/login", data={"secret": TOKEN, "next": target})
        assert ok.headers["location"] == "/rejects"


def test_basic_auth_with_username_and_password(store: Store) -> None:
    cfg = WebConfig(
        token=SecretStr(TOKEN), token_env=None, username="tech", password=SecretStr("pw-1")
    )
    client = TestClient(create_app(store, template_chat, cfg), follow_redirects=False)

    def basic(user: str, password: str) -> dict:
        raw = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    assert client.get("/rejects", headers=basic("tech", "pw-1")).status_code == 200
    assert client.get("/rejects", headers=basic("tech", "nope")).status_code == 401
    assert client.get("/rejects", headers=basic("other", "pw-1")).status_code == 401
    # the token is a bearer token; under HTTP Basic only web.username and its password count
    assert client.get("/rejects", headers=basic("anyone", TOKEN)).status_code == 401
    assert client.get("/rejects", headers=AUTH).status_code == 200


def test_login_form_with_username_and_password_only(store: Store) -> None:
    cfg = WebConfig(token_env=None, username="tech", password=SecretStr("pw-1"))
    client = TestClient(create_app(store, template_chat, cfg), follow_redirects=False)
    page = client.get("/login?next=/rejects/f-1")
    assert page.status_code == 200
    assert 'name="username"' in page.text and 'name="secret"' in page.text
    assert "token" not in page.text.lower()  # no token configured: none asked for
    wrong = client.post("/login", data={"username": "tech", "secret": "nope"})
    assert wrong.status_code == 401 and 'name="username"' in wrong.text
    assert client.post("/login", data={"secret": "pw-1"}).status_code == 401  # user name needed
    ok = client.post("/login", data={"username": "tech", "secret": "pw-1", "next": "/rejects/f-1"})
    assert ok.status_code == 303 and ok.headers["location"] == "/rejects/f-1"
    assert client.get("/rejects/f-1").status_code == 200  # the client keeps the cookie


def test_login_form_with_both_token_and_password(store: Store) -> None:
    cfg = settings(username="tech", password=SecretStr("pw-1"))
    client = TestClient(create_app(store, template_chat, cfg), follow_redirects=False)
    page = client.get("/login")
    assert 'name="username"' in page.text and "Password or access token" in page.text
    assert client.post("/login", data={"secret": TOKEN}).status_code == 303
    assert client.post("/login", data={"username": "tech", "secret": "pw-1"}).status_code == 303


def test_no_configured_login_refuses_to_start(store: Store) -> None:
    with pytest.raises(CredentialsError, match="INSPECTOR_WEB_TEST_UNSET"):
        create_app(store, template_chat, WebConfig(token_env="INSPECTOR_WEB_TEST_UNSET"))


def test_list_shows_recorded_rejects_and_filters_work(client: TestClient) -> None:
    def cells(query: str = "") -> set[str]:
        text = client.get("/rejects" + query, headers=AUTH).text
        return {c for c in ("cell-001", "&lt;script&gt;", "cell-pass") if c in text}

    assert cells() == {"cell-001", "&lt;script&gt;"}  # rejects only, the pass is not listed
    assert cells("?product=pouch+cell") == {"cell-001"}
    # the trigger's short name finds the bundle's noun, in any case; part of a word does not
    assert cells("?product=Pouch") == {"cell-001"} and cells("?product=ultra") == set()
    assert cells("?product=%25") == set()  # a LIKE wildcard is a plain character here
    assert cells("?station=S2") == {"&lt;script&gt;"}
    assert cells("?period=24h") == {"cell-001"}  # the other reject is three days old
    assert cells("?period=1h&station=S2") == set()
    assert "No rejects match these filters" in client.get("/rejects?station=S9", headers=AUTH).text


def test_reject_page_shows_explanation_and_regions_and_escapes_text(
    client: TestClient, store: Store
) -> None:
    job = store.claim_job()
    assert job is not None and job.frame_id == "f-1"
    store.finish_job(job.id, "One defect, upper left. <b>bold</b>", "template")
    page = client.get("/rejects/f-1", headers=AUTH).text
    assert "One defect, upper left. &lt;b&gt;bold&lt;/b&gt;" in page
    assert 'src="/rejects/f-1/overlay"' in page and "upper left" in page

    hostile = client.get("/rejects/f-2", headers=AUTH)
    assert hostile.status_code == 200
    assert HOSTILE_CELL not in hostile.text and "<script>alert" not in hostile.text
    assert hostile.text.count("<script") == 1  # only the page's own /static/page.js
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in hostile.text
    assert "Not explained yet" in hostile.text
    assert "default-src 'none'" in hostile.headers["content-security-policy"]
    listed = client.get("/rejects", headers=AUTH).text  # f-1 explained, f-2 still waiting
    assert listed.count('class="pill ok">ready') == 1
    assert listed.count('class="pill wait">pending') == 1


def test_overlay_png_decodes_at_the_frame_size_and_shows_the_map(client: TestClient) -> None:
    plain = decode_png(client.get("/rejects/f-1/image", headers=AUTH).content)
    response = client.get("/rejects/f-1/overlay", headers=AUTH)
    assert response.headers["content-type"] == "image/png"
    overlay = decode_png(response.content)
    assert overlay.shape == (*FRAME_SHAPE, 3) and plain.shape[:2] == FRAME_SHAPE
    diff = np.abs(overlay.astype(int) - plain.astype(int)).sum(axis=2)
    # the blob at (60, 50) is painted hot; far corners stay close to the frame
    assert diff[45:55, 55:65].mean() > 3 * diff[200:230, 280:310].mean()
    thumb = decode_png(client.get("/rejects/f-1/thumb", headers=AUTH).content)
    assert thumb.shape[1] == 320


SECRET_PNG = "outside-secret.png"


@pytest.mark.parametrize(
    "path",
    [
        "/rejects/..%2F..%2Fetc%2Fpasswd/image",
        "/rejects/..%2F..%2F" + SECRET_PNG + "/image",
        "/rejects/%2E%2E/image",
        "/static/../../x",
        "/static/..%2F..%2Fx",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/style.css/../../../etc/passwd",
        "/rejects/f-1/image/../../../../etc/passwd",
    ],
)
def test_path_traversal_gets_404_and_reads_nothing(
    client: TestClient, store: Store, path: str
) -> None:
    outside = store.data_dir.parent / SECRET_PNG
    cv2.imwrite(str(outside), np.full((8, 8), 7, np.uint8))
    response = client.get(path, headers=AUTH)
    assert response.status_code == 404
    assert b"root:" not in response.content and not response.content.startswith(b"\x89PNG")


def test_stored_paths_outside_the_data_dir_are_refused(client: TestClient, store: Store) -> None:
    outside = store.data_dir.parent / "outside.png"
    cv2.imwrite(str(outside), np.full(FRAME_SHAPE, 7, np.uint8))
    link = store.data_dir / "rejects" / "link.png"
    link.symlink_to(outside)
    with sqlite3.connect(store.path) as db:  # a tampered row: one absolute path, one via a link
        db.execute("UPDATE results SET image_path=? WHERE frame_id='f-1'", (str(outside),))
        db.execute("UPDATE results SET image_path=? WHERE frame_id='f-2'", (str(link),))
    for frame in ("f-1", "f-2"):
        for kind in ("image", "overlay"):
            response = client.get(f"/rejects/{frame}/{kind}", headers=AUTH)
            assert response.status_code == 404, (frame, kind)
            assert not response.content.startswith(b"\x89PNG")
    assert "No image was saved" in client.get("/rejects/f-1", headers=AUTH).text


def test_chat_is_answered_and_the_history_is_shown_on_reload(store: Store, tmp_path: Path) -> None:
    calls: list[tuple[list[dict], str]] = []

    def recording_chat(reject: dict, history: list[dict], question: str) -> str:
        calls.append(([dict(t) for t in history], question))
        return template_chat(reject, history, question)

    client = TestClient(create_app(store, recording_chat, settings()), follow_redirects=False)
    ask = {"question": "How big is region 1?"}
    first = client.post("/rejects/f-1/chat", data=ask, headers=AUTH)
    assert first.status_code == 303 and first.headers["location"].startswith("/rejects/f-1")
    client.post("/rejects/f-1/chat", data={"question": "<i>where</i> is it?"}, headers=AUTH)

    page = client.get("/rejects/f-1", headers=AUTH).text
    turns = store.chat_history("f-1")
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert "Region 1" in turns[1]["text"] and "upper left" in turns[1]["text"]
    assert "How big is region 1?" in page and "&lt;i&gt;where&lt;/i&gt; is it?" in page
    assert turns[1]["text"].split(".")[0] in page
    # the second question was asked with the first turn as context
    assert [t["text"] for t in calls[1][0]] == [turns[0]["text"], turns[1]["text"]]
    assert store.chat_history("f-2") == []


def test_a_failing_assistant_keeps_the_question(store: Store) -> None:
    def broken(reject: dict, history: list[dict], question: str) -> str:
        raise RuntimeError("model server down")

    client = TestClient(create_app(store, broken, settings()), follow_redirects=False)
    response = client.post("/rejects/f-1/chat", data={"question": "Is it a dent?"}, headers=AUTH)
    assert response.status_code == 502
    assert "could not answer" in response.text and ">Is it a dent?</textarea>" in response.text
    assert store.chat_history("f-1") == []


@pytest.mark.parametrize(
    "where",
    [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}],
)
def test_cross_site_form_posts_are_refused(client: TestClient, store: Store, where: dict) -> None:
    response = client.post("/rejects/f-1/chat", data={"question": "hi"}, headers={**AUTH, **where})
    assert response.status_code == 403
    assert store.chat_history("f-1") == []


def test_16_bit_frame_is_shown_as_8_bit_with_a_thumbnail(client: TestClient, store: Store) -> None:
    image = (np.arange(300 * 400).reshape(300, 400) % 4096).astype(np.uint16)
    amap = np.zeros((300, 400), np.float32)
    amap[100:140, 200:260] = 0.9
    region = {"bbox": [200, 100, 60, 40], "area_px": 2400.0, "peak": 0.9, "mean": 0.9,
              "centroid": [230.0, 120.0], "position": "centre"}  # fmt: skip
    result = {"frame_id": "f-16", "cell_id": "mono12", "verdict": "fail", "regions": [region]}
    store.record(result | {"image_score": 0.9}, image, amap)
    plain = decode_png(client.get("/rejects/f-16/image", headers=AUTH).content)
    assert plain.dtype == np.uint8 and plain.shape[:2] == (300, 400) and plain.max() > 200
    thumb = decode_png(client.get("/rejects/f-16/thumb", headers=AUTH).content)
    assert thumb.shape == (240, 320, 3)


def test_oversized_forms_are_dropped_unread(client: TestClient, store: Store) -> None:
    huge = {"question": "x" * 200_000}
    assert client.post("/rejects/f-1/chat", data=huge, headers=AUTH).status_code == 303
    assert store.chat_history("f-1") == []
    assert client.post("/login", data={"secret": TOKEN, "pad": "x" * 200_000}).status_code == 401
    long_one = {"question": "\u00e9" * 2001}  # over the length a question may have
    response = client.post("/rejects/f-1/chat", data=long_one, headers=AUTH)
    assert response.status_code == 413 and "under 2000 characters" in response.text
    assert store.chat_history("f-1") == []
