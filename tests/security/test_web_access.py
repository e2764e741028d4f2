"""The technicians' page against forged credentials and odd requests.

tests/inspector/web covers the plain cases (no or wrong credentials on each page, traversal
paths, escaping of stored text, off-site redirects); these throw arbitrary headers, cookies,
paths and ``next`` targets at it: the answer is always a refusal or a page, never a crash
and never a file from outside the data directory.
"""

from __future__ import annotations

import base64
import string
import time

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from inspector.config.web import WebConfig
from inspector.store.db import Store
from inspector.web.app import create_app
from inspector.web.auth import COOKIE_NAME
from inspector.web.chat import template_chat
from tests.inspector.web.conftest import store  # noqa: F401

TOKEN = "tok-sec-81"
SETTINGS = dict(max_examples=60, deadline=None)
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=300)
FUZZ = [HealthCheck.function_scoped_fixture]
URL_CHARS = st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_categories=["Cc"])


@pytest.fixture
def client(store: Store) -> TestClient:  # noqa: F811
    cfg = WebConfig(token=SecretStr(TOKEN), token_env=None)
    app = create_app(store, template_chat, cfg)  # a server error must show as a 500 here
    return TestClient(app, follow_redirects=False, raise_server_exceptions=False)


BEARER = {"Authorization": f"Bearer {TOKEN}"}


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@settings(**SETTINGS, suppress_health_check=FUZZ)
@given(header=st.one_of(HEADER_TEXT, HEADER_TEXT.map("Bearer ".__add__), st.binary().map(basic)))
@example(header="Bearer " + TOKEN + " ")  # stripped: still the token; must pass below
@example(header="Basic " + "=" * 200)
@example(header=basic(b"\xff\xfe:" + TOKEN.encode()))
@example(header="bearer\t" + TOKEN)
def test_forged_authorization_headers_are_refused_without_a_crash(client, header: str) -> None:
    response = client.get("/rejects", headers={"Authorization": header.encode("latin-1")})
    if header.strip() in (f"Bearer {TOKEN}", f"bearer {TOKEN}"):
        assert response.status_code == 200
    else:  # 429 once this client has guessed ten times within a minute
        assert response.status_code in (401, 429), (header, response.status_code)


@settings(**SETTINGS, suppress_health_check=FUZZ)
@given(cookie=st.text(string.printable.replace(";", "").replace(" ", ""), max_size=300))
@example(cookie="9" * 5000 + ".abc.0123")  # an expiry of 5000 digits: int() refuses it
@example(cookie=f"{int(time.time()) + 3600}.deadbeef.{'0' * 64}")  # well-formed, wrong MAC
@example(cookie=f"{int(time.time()) + 3600}.deadbeef")
def test_forged_login_cookies_are_refused_without_a_crash(client, cookie: str) -> None:
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, cookie)
    response = client.get("/rejects")
    assert response.status_code == 401, (cookie, response.status_code)


def test_an_expired_cookie_made_by_the_server_is_refused(client) -> None:
    ok = client.post("/login", data={"secret": TOKEN})
    value = ok.cookies[COOKIE_NAME]
    expires, rest = value.split(".", 1)
    assert client.get("/rejects").status_code == 200
    stale = f"{int(time.time()) - 1}.{rest}"  # the MAC no longer matches either way
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, stale)
    assert client.get("/rejects").status_code == 401


@settings(**SETTINGS, suppress_health_check=FUZZ)
@given(path=st.text(URL_CHARS, max_size=80))
@example(path="rejects/f-1/image/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd")
@example(path="rejects/%00/image")
@example(path="static/%2e%2e%2f%2e%2e%2fsetup.cfg")
def test_any_path_is_a_page_or_a_refusal_and_never_a_file_from_outside(client, path) -> None:
    url = "/" + path.lstrip("/")
    anonymous = client.get(url)
    authorized = client.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert anonymous.status_code in (401, 404, 200, 307), (url, anonymous.status_code)
    if anonymous.status_code == 200:  # only the open pages and the bundled static files
        assert url.split("?")[0] in ("/health", "/login") or url.startswith("/static/")
    assert authorized.status_code < 500, (url, authorized.status_code)
    body = authorized.content
    assert b"root:x:0:0" not in body and b"[metadata]" not in body and b"PRIVATE KEY" not in body


@settings(**SETTINGS, suppress_health_check=FUZZ)
@given(target=st.text(max_size=120))
@example(target='/rejects"><script>alert(1)</script>')
@example(target="/rejects/f-1?x=<img src=x onerror=alert(1)>")
def test_the_login_page_escapes_the_next_target(client, target: str) -> None:
    page = client.get("/login", params={"next": target})
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert page.text.count("<script") == 1  # only the page's own /static/page.js


def test_repeated_wrong_logins_are_slowed_down_for_that_client_only(store: Store) -> None:  # noqa: F811
    app = create_app(store, template_chat, WebConfig(token=SecretStr(TOKEN), token_env=None))
    guesser = TestClient(app, follow_redirects=False, client=("10.0.0.66", 40000))
    colleague = TestClient(app, follow_redirects=False, client=("10.0.0.7", 40000))
    codes = [guesser.post("/login", data={"secret": f"guess{i}"}).status_code for i in range(11)]
    assert codes == [401] * 10 + [429]
    assert guesser.post("/login", data={"secret": TOKEN}).status_code == 429
    assert guesser.get("/rejects", headers=BEARER).status_code == 429  # the header way, too
    # everyone else logs in as before, with the form or the token
    assert colleague.post("/login", data={"secret": TOKEN}).status_code == 303
    assert colleague.get("/rejects", headers=BEARER).status_code == 200


def test_wrong_authorization_headers_are_limited_like_the_form(store: Store) -> None:  # noqa: F811
    app = create_app(store, template_chat, WebConfig(token=SecretStr(TOKEN), token_env=None))
    guesser = TestClient(app, follow_redirects=False, client=("10.0.0.66", 40000))
    colleague = TestClient(app, follow_redirects=False, client=("10.0.0.7", 40000))
    raw = base64.b64encode(b"admin:guess").decode()
    wrong = [{"Authorization": f"Bearer guess{i}"} for i in range(6)]
    wrong += [{"Authorization": f"Basic {raw}"}] * 4
    codes = [guesser.get("/rejects", headers=h).status_code for h in wrong]
    assert codes == [401] * 10
    assert guesser.get("/rejects", headers={"Authorization": "Bearer guess"}).status_code == 429
    assert guesser.get("/rejects", headers=BEARER).status_code == 429
    assert guesser.post("/login", data={"secret": TOKEN}).status_code == 429
    assert guesser.get("/health").status_code == 200
    assert colleague.get("/rejects", headers=BEARER).status_code == 200


def test_logout_revokes_the_session(client: TestClient) -> None:
    assert client.post("/login", data={"secret": TOKEN}).status_code == 303
    cookie = client.cookies.get(COOKIE_NAME)
    assert client.get("/rejects").status_code == 200
    assert client.post("/logout").status_code == 303
    client.cookies.set(COOKIE_NAME, cookie)  # a copy kept from before the logout
    assert client.get("/rejects", headers={"Accept": "application/json"}).status_code == 401
