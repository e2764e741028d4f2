"""The wall every request passes first: login, the wrong-login lock-out, cross-site forms,
and the security headers on every answer.

Everything but ``/health``, the login form and the static files needs a login (bearer token,
HTTP Basic or the cookie the login form sets). A browser asking for a page without one is sent
to the login form; anything else gets 401. A client that guessed wrong too often gets 429 for
a minute; a form posted from another site gets 403.

Example:
    >>> app.middleware("http")(guard)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from inspector.web.auth import COOKIE_NAME
from inspector.web.deps import WebState, client_of

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/login"})
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


async def guard(request: Request, call_next) -> Response:
    """The HTTP middleware: answers itself unless the request may go on to its route."""
    web: WebState = request.app.state.web
    path = request.scope.get("path", "")
    public = path in PUBLIC_PATHS or (
        path.startswith("/static/") and path.removeprefix("/static/") in web.static
    )
    verdict = 200 if public else authorization(web, request)
    if verdict == 429:
        response = JSONResponse(
            {"detail": "too many wrong logins from this address; wait a minute"},
            status_code=429,
            headers={"Retry-After": "60"},
        )
    elif verdict != 200:
        response = _login_required(request, path)
    elif request.method == "POST" and not same_origin(request):
        response = JSONResponse({"detail": "cross-site form refused"}, status_code=403)
    else:
        response = await call_next(request)
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


def authorization(web: WebState, request: Request) -> int:
    """200 (let in), 401 (no or wrong credentials) or 429 (this client guessed too often).

    A wrong ``Authorization`` header counts as a wrong login, as the form does."""
    header = request.headers.get("authorization")
    if header is None:
        return 200 if web.auth.check_cookie(request.cookies.get(COOKIE_NAME)) else 401
    client = client_of(request)
    if web.throttle.blocked(client):
        return 429
    if web.auth.check_header(header):
        return 200
    web.throttle.failed(client)
    log.warning("wrong Authorization header from %s", client)
    return 401


def _login_required(request: Request, path: str) -> Response:
    """To the login form (and back) for a browser asking for a page; 401 for anything else."""
    wants_html = "text/html" in request.headers.get("accept", "")
    if request.method == "GET" and wants_html:
        target = quote(path + ("?" + request.url.query if request.url.query else ""))
        return RedirectResponse(f"/login?next={target}", status_code=303)
    return JSONResponse(
        {"detail": "login required"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="inspector"'},
    )


def same_origin(request: Request) -> bool:
    """False for a form posted from another site (a second wall behind the SameSite cookie).

    Browsers say where a request comes from in ``Sec-Fetch-Site`` (or at least ``Origin``);
    clients that send neither (curl, scripts) are not browsers and carry no cookie of ours.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc == request.headers.get("host", "")
