"""Labelling rejects on the page and over the API: who said it, what, and what is refused."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from inspector.config.web import WebConfig
from inspector.store.db import Store
from inspector.web.app import create_app
from inspector.web.chat import template_chat

TOKEN = "tok-feedback-7"
PASSWORD = "pw-feedback-7"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def client(store: Store) -> TestClient:
    settings = WebConfig(
        token=SecretStr(TOKEN), token_env=None, username="anna", password=SecretStr(PASSWORD)
    )
    return TestClient(create_app(store, template_chat, settings), follow_redirects=False)


def test_api_labels_the_newest_reject_of_a_cell_with_the_user(
    client: TestClient, store: Store
) -> None:
    body = {"label": "false_reject", "note": "glare"}
    answer = client.post("/api/rejects/cell-001/feedback", json=body, headers=AUTH)
    assert answer.status_code == 201
    assert answer.json()["frame_id"] == "f-1" and answer.json()["user"] == "token"
    basic = base64.b64encode(f"anna:{PASSWORD}".encode()).decode()
    client.post(
        "/api/rejects/cell-001/feedback",
        json={"label": "confirmed"},
        headers={"Authorization": f"Basic {basic}"},
    )
    history = store.feedback_history("f-1")
    assert [(f["label"], f["user"], f["channel"], f["note"]) for f in history] == [
        ("false_reject", "token", "api", "glare"),
        ("confirmed", "anna", "api", ""),
    ]
    assert store.reject("f-1")["feedback"] == "confirmed"  # the newest label counts


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"label": "maybe"}, 422),
        ({"label": "confirmed", "note": 5}, 422),
        ({"label": "confirmed", "note": "x" * 1001}, 422),
        ([1, 2], 422),
        ("not json", 422),
    ],
)
def test_api_refuses_bad_labels_and_notes(client: TestClient, store: Store, body, status) -> None:
    if isinstance(body, str):
        answer = client.post("/api/rejects/cell-001/feedback", content=body, headers=AUTH)
    else:
        answer = client.post("/api/rejects/cell-001/feedback", json=body, headers=AUTH)
    assert answer.status_code == status, answer.text
    assert store.feedback_history("f-1") == []


def test_api_needs_a_login_and_a_reject(client: TestClient, store: Store) -> None:
    body = {"label": "confirmed"}
    assert client.post("/api/rejects/cell-001/feedback", json=body).status_code == 401
    missing = client.post("/api/rejects/cell-pass/feedback", json=body, headers=AUTH)
    assert missing.status_code == 404  # a passed cell is no reject
    big = client.post(
        "/api/rejects/cell-001/feedback", content=b"{" + b" " * 70_000 + b"}", headers=AUTH
    )
    assert big.status_code == 413
    assert store.feedback_history("f-1") == []


def test_page_buttons_record_the_logged_in_user(client: TestClient, store: Store) -> None:
    login = client.post("/login", data={"username": "anna", "secret": PASSWORD, "next": "/"})
    assert login.status_code == 303
    page = client.get("/rejects/f-1")
    assert 'value="false_reject"' in page.text and "Not labelled yet" in page.text
    sent = client.post(
        "/rejects/f-1/feedback", data={"label": "false_reject", "note": "<b>label sticker</b>"}
    )
    assert sent.status_code == 303 and sent.headers["location"] == "/rejects/f-1#feedback"
    page = client.get("/rejects/f-1")
    assert "False reject" in page.text and "by anna" in page.text
    assert "&lt;b&gt;label sticker&lt;/b&gt;" in page.text  # escaped, never markup
    assert store.feedback_history("f-1")[0]["channel"] == "web"
    assert "false reject" in client.get("/rejects").text
    refused = client.post("/rejects/f-1/feedback", data={"label": "nonsense"})
    assert refused.status_code == 422 and len(store.feedback_history("f-1")) == 1
    assert "label must be one of confirmed, false_reject" in refused.text


def test_a_form_from_another_site_is_refused(client: TestClient, store: Store) -> None:
    client.post("/login", data={"username": "anna", "secret": PASSWORD, "next": "/"})
    forged = client.post(
        "/rejects/f-1/feedback",
        data={"label": "false_reject"},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert forged.status_code == 403 and store.feedback_history("f-1") == []
