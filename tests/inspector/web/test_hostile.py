"""Whatever text reaches the store (cell ids, products, chat questions), the page shows it
escaped and keeps working."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape
from pydantic import SecretStr

from inspector.config.web import WebConfig
from inspector.store.db import Store
from inspector.web.app import create_app
from inspector.web.chat import template_chat

AUTH = {"Authorization": "Bearer t"}
MARKUP = st.sampled_from(["<script>x</script>", "<img src=x onerror=alert(1)>", '"><b>', "&amp;"])
TEXT = st.one_of(st.text(max_size=300), st.tuples(st.text(max_size=20), MARKUP).map("".join))
_ids = itertools.count()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, TestClient]]:
    store = Store(tmp_path_factory.mktemp("hostile") / "data")
    cfg = WebConfig(token=SecretStr("t"), token_env=None)
    yield store, TestClient(create_app(store, template_chat, cfg), follow_redirects=False)
    store.close()


def shown_escaped(text: str, page: str) -> bool:
    return not any(c in text for c in "<>&\"'") or str(escape(text)) in page


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cell=TEXT, product=TEXT, question=TEXT)
def test_any_text_is_shown_escaped(client, cell: str, product: str, question: str) -> None:
    store, web = client
    frame = f"f-{next(_ids)}"
    result = {"frame_id": frame, "cell_id": cell, "product": product, "verdict": "fail"}
    store.record(result, None, None)  # a reject whose pictures were not saved (disk low)
    asked = web.post(f"/rejects/{frame}/chat", data={"question": question}, headers=AUTH)
    assert asked.status_code in (303, 413)
    page = web.get(f"/rejects/{frame}", headers=AUTH)
    listing = web.get("/rejects", headers=AUTH)
    assert page.status_code == listing.status_code == 200
    for text in (cell, product, question.strip()):
        assert shown_escaped(text, page.text)
    assert shown_escaped(cell, listing.text) and shown_escaped(product, listing.text)
    for html in (page.text, listing.text):
        assert "<script>x" not in html and "<img src=x" not in html and "<b>" not in html
