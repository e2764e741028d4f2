"""Logging in and out: the login form, its post (counted against the lock-out) and logout.

A good login sets the session cookie (HttpOnly, SameSite=Strict) and goes on to the page the
browser first asked for, when that is a path on this site; logout revokes the cookie.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from inspector.web.auth import COOKIE_NAME
from inspector.web.deps import State, WebState, client_of
from inspector.web.forms import read_form

log = logging.getLogger(__name__)

router = APIRouter()


def safe_next(target: str | None) -> str:
    """A same-site path to go to after login; anything else goes to the list."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/rejects"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/rejects"


def login_page(
    web: WebState, request: Request, status: int, target: str, error: str | None
) -> HTMLResponse:
    """The login form, asking for what is configured: user name and password, token, or both."""
    return web.pages.render(
        request,
        "login.html",
        status=status,
        next=target,
        error=error,
        with_user=web.credentials.username is not None,
        with_token=web.credentials.token is not None,
    )


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, web: State, next: str | None = None) -> HTMLResponse:
    return login_page(web, request, 200, safe_next(next), None)


@router.post("/login")
async def login(request: Request, web: State) -> Response:
    """The form's user name and secret (password or token): a session cookie, or the form
    again with 401, or 429 while this address is locked out."""
    form = await read_form(request)
    target = safe_next(form.get("next"))
    client = client_of(request)
    if web.throttle.blocked(client):
        return login_page(
            web, request, 429, target, "Too many wrong attempts. Wait a minute and try again."
        )
    user = web.auth.login_user(form.get("username", ""), form.get("secret", ""))
    if user is None:
        web.throttle.failed(client)
        log.warning("failed login from %s", client)
        return login_page(web, request, 401, target, "Wrong token or password.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        web.auth.new_session(user),
        max_age=web.auth.session_s,
        httponly=True,
        samesite="strict",
        secure=web.settings.cookie_secure,
    )
    return response


@router.post("/logout")
def logout(request: Request, web: State) -> Response:
    web.auth.revoke(request.cookies.get(COOKIE_NAME))  # a copy of the cookie dies with it
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE_NAME)
    return response
