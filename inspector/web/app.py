"""The technicians' page: recent rejects, one reject with its pictures, explanation and chat.

``create_app(store, chat_fn, settings)`` builds the FastAPI application; ``inspector serve``
runs it under uvicorn. Everything but ``/health``, the login form and the stylesheet needs a
login (bearer token, HTTP Basic or the cookie the login form sets). Pages are Jinja2 templates
with autoescaping on; pictures are looked up by frame id in the store, never by a path taken
from the request.

Example:
    >>> app = create_app(Store(data_dir), template_chat, WebConfig(token=...))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from inspector.comms.inbound import FeedbackError, check_feedback
from inspector.web import present
from inspector.web.auth import COOKIE_NAME, Authenticator, Throttle
from inspector.web.config import WebConfig
from inspector.web.pictures import PictureMissing, Pictures, stored_file

log = logging.getLogger(__name__)

ChatFn = Callable[[dict, list[dict], str], str]
MAX_FORM_BYTES = 65_536  # a 2000-character question in any script, url-encoded
MAX_QUESTION_CHARS = 2000
LOGIN_FAILURES_PER_MINUTE = 10  # per client address, form and Authorization header together
CHAT_WAITING = 8  # questions waiting for the assistant; more are told to come back
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


class RejectStore(Protocol):
    """The part of ``inspector.store.db.Store`` the page reads and writes."""

    data_dir: Path

    def rejects(self, since=None, product=None, station=None, limit=100) -> list[dict]: ...
    def reject(self, frame_id: str) -> dict | None: ...
    def explanation(self, frame_id: str) -> dict | None: ...
    def chat_history(self, frame_id: str) -> list[dict]: ...
    def append_chat(self, frame_id: str, role: str, text: str) -> None: ...
    def add_feedback(self, label, user, channel, note="", frame_id=None, cell_id=None) -> dict: ...
    def feedback_history(self, frame_id: str) -> list[dict]: ...


def _bundled(folder: str) -> resources.abc.Traversable:
    return resources.files("inspector.web").joinpath(folder)


def _static_files() -> dict[str, tuple[bytes, str]]:
    """The stylesheet and icons, read once into memory (so no request touches the disk)."""
    types = {
        ".css": "text/css; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".svg": "image/svg+xml",
    }
    out = {}
    for entry in _bundled("static").iterdir():
        suffix = Path(entry.name).suffix
        if entry.is_file() and suffix in types:
            out[entry.name] = (entry.read_bytes(), types[suffix])
    return out


def _safe_next(target: str | None) -> str:
    """A same-site path to go to after login; anything else goes to the list."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/rejects"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/rejects"


async def _body(request: Request) -> bytes | None:
    """A small request body, or None past ``MAX_FORM_BYTES`` (read in chunks, never more)."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return bytes(body)


async def _form(request: Request) -> dict[str, str]:
    """A small url-encoded form body as a dict (first value of each field).

    Read in chunks and given up on past ``MAX_FORM_BYTES`` (empty form), so an oversized
    body, even one sent to the open login form, cannot fill the memory.
    """
    body = await _body(request)
    if body is None:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def create_app(store: RejectStore, chat_fn: ChatFn, settings: WebConfig) -> FastAPI:
    """The technicians' page over ``store``, answering chat questions with ``chat_fn``.

    Args:
        store: the station's store (``inspector.store.db.Store``); its ``data_dir`` bounds every
            file the page reads.
        chat_fn: ``chat_fn(reject, history, question) -> answer``; ``history`` holds the earlier
            turns of this reject as ``{role, text, ts}``.
        settings: the ``web`` section of the config; its credentials are read now.

    Raises:
        CredentialsError: no token or username/password is configured.
    """
    credentials = settings.credentials()
    auth = Authenticator(credentials, settings.session_hours)
    throttle = Throttle(LOGIN_FAILURES_PER_MINUTE, 60.0)
    data_dir = Path(store.data_dir)
    pictures = Pictures(data_dir)
    static = _static_files()
    # one question at a time to the language model, on a thread of its own: a hanging model
    # holds that thread, never the threads that serve the other pages
    chat_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat")
    chat_waiting = [0]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_bundled("templates"))),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clock"] = present.clock
    env.filters["ago"] = present.ago
    env.filters["seg"] = lambda value: quote(str(value), safe="")  # one URL path segment

    app = FastAPI(
        title="battery-inspector: technicians' page",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def page(
        request: Request, name: str, status: int = 200, headers: dict | None = None, **ctx: Any
    ) -> HTMLResponse:
        html = env.get_template(name).render(request=request, logged_in=name != "login.html", **ctx)
        return HTMLResponse(
            html, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})}
        )

    def login_page(request: Request, status: int, target: str, error: str | None) -> HTMLResponse:
        """The login form, asking for what is configured: user name and password, token, or both."""
        return page(
            request,
            "login.html",
            status=status,
            next=target,
            error=error,
            with_user=credentials.username is not None,
            with_token=credentials.token is not None,
        )

    def not_found(request: Request, what: str = "No such reject") -> HTMLResponse:
        return page(request, "missing.html", status=404, what=what)

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "?"

    def authorization(request: Request) -> int:
        """200 (let in), 401 (no or wrong credentials) or 429 (this client guessed too often).

        A wrong ``Authorization`` header counts as a wrong login, as the form does."""
        header = request.headers.get("authorization")
        if header is None:
            return 200 if auth.check_cookie(request.cookies.get(COOKIE_NAME)) else 401
        client = client_of(request)
        if throttle.blocked(client):
            return 429
        if auth.check_header(header):
            return 200
        throttle.failed(client)
        log.warning("wrong Authorization header from %s", client)
        return 401

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.scope.get("path", "")
        public = path in PUBLIC_PATHS or (
            path.startswith("/static/") and path.removeprefix("/static/") in static
        )
        verdict = 200 if public else authorization(request)
        if verdict == 429:
            response = JSONResponse(
                {"detail": "too many wrong logins from this address; wait a minute"},
                status_code=429,
                headers={"Retry-After": "60"},
            )
        elif verdict != 200:
            wants_html = "text/html" in request.headers.get("accept", "")
            if request.method == "GET" and wants_html:
                target = quote(path + ("?" + request.url.query if request.url.query else ""))
                response = RedirectResponse(f"/login?next={target}", status_code=303)
            else:
                response = JSONResponse(
                    {"detail": "login required"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="inspector"'},
                )
        elif request.method == "POST" and not _same_origin(request):
            response = JSONResponse({"detail": "cross-site form refused"}, status_code=403)
        else:
            response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @app.get("/health")
    async def health() -> dict:  # async: answers even when every worker thread is busy
        """Liveness for monitoring; open to all and says nothing about the rejects."""
        return {"status": "ok"}

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in static:
            return Response("not found", status_code=404, media_type="text/plain")
        body, media_type = static[name]
        return Response(body, media_type=media_type, headers={"Cache-Control": "max-age=3600"})

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None) -> HTMLResponse:
        return login_page(request, 200, _safe_next(next), None)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        target = _safe_next(form.get("next"))
        client = client_of(request)
        if throttle.blocked(client):
            return login_page(
                request, 429, target, "Too many wrong attempts. Wait a minute and try again."
            )
        user = auth.login_user(form.get("username", ""), form.get("secret", ""))
        if user is None:
            throttle.failed(client)
            log.warning("failed login from %s", client)
            return login_page(request, 401, target, "Wrong token or password.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            auth.new_session(user),
            max_age=auth.session_s,
            httponly=True,
            samesite="strict",
            secure=settings.cookie_secure,
        )
        return response

    @app.post("/logout")
    def logout(request: Request) -> Response:
        auth.revoke(request.cookies.get(COOKIE_NAME))  # a copy of the cookie dies with it
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE_NAME)
        return response

    @app.get("/")
    def home() -> Response:
        return RedirectResponse("/rejects", status_code=303)

    @app.get("/rejects", response_class=HTMLResponse)
    def reject_list(
        request: Request,
        period: str | None = None,
        product: str | None = None,
        station: str | None = None,
        n: int | None = None,
    ) -> HTMLResponse:
        filters = present.Filters.parse(period, product, station)
        limit = min(max(n or settings.page_size, 1), 20 * settings.page_size)
        rows = store.rejects(
            since=filters.since(),
            product=filters.product or None,
            station=filters.station or None,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = [present.result_of(r) for r in rows[:limit]]
        return page(
            request,
            "list.html",
            rows=rows,
            filters=filters,
            periods=present.PERIODS,
            more=more,
            more_n=limit + settings.page_size,
        )

    def load(frame_id: str) -> dict | None:
        reject = store.reject(frame_id)
        return present.result_of(reject) if reject else None

    def reject_page(
        request: Request,
        reject: dict,
        status: int = 200,
        question: str = "",
        error: str = "",
        feedback_error: str = "",
    ) -> HTMLResponse:
        frame_id = reject["frame_id"]
        return page(
            request,
            "reject.html",
            status=status,
            r=reject,
            regions=present.region_rows(reject),
            explanation=store.explanation(frame_id),
            history=store.chat_history(frame_id),
            feedback=store.feedback_history(frame_id),
            has_image=stored_file(data_dir, reject.get("image_path")) is not None,
            has_map=stored_file(data_dir, reject.get("map_path")) is not None,
            question=question,
            error=error,
            feedback_error=feedback_error,
        )

    @app.get("/rejects/{frame_id}", response_class=HTMLResponse)
    def reject_view(request: Request, frame_id: str) -> HTMLResponse:
        reject = load(frame_id)
        return reject_page(request, reject) if reject else not_found(request)

    def picture(frame_id: str, kind: str) -> Response:
        reject = load(frame_id)
        if reject is None:
            return Response("no such reject", status_code=404, media_type="text/plain")
        make = {
            "image": pictures.image_png,
            "overlay": pictures.overlay_png,
            "thumb": pictures.thumb_png,
        }[kind]
        try:
            data = make(reject)
        except PictureMissing as exc:
            return Response(f"no picture: {exc}", status_code=404, media_type="text/plain")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private"})

    @app.get("/rejects/{frame_id}/image")
    def image(frame_id: str) -> Response:
        """The frame as stored, as an 8-bit PNG."""
        return picture(frame_id, "image")

    @app.get("/rejects/{frame_id}/overlay")
    def overlay(frame_id: str) -> Response:
        """The frame with heat map and numbered region boxes, at the frame's size."""
        return picture(frame_id, "overlay")

    @app.get("/rejects/{frame_id}/thumb")
    def thumb(frame_id: str) -> Response:
        return picture(frame_id, "thumb")

    @app.post("/rejects/{frame_id}/chat")
    async def ask(request: Request, frame_id: str) -> Response:
        """A follow-up question: answered by ``chat_fn``, both turns kept with the reject."""
        reject = await run_in_threadpool(load, frame_id)
        if reject is None:
            return not_found(request)
        question = (await _form(request)).get("question", "").strip()
        if not question:
            return RedirectResponse(f"/rejects/{quote(frame_id, safe='')}#chat", 303)
        if len(question) > MAX_QUESTION_CHARS:
            return await run_in_threadpool(
                reject_page,
                request,
                reject,
                413,
                question[:MAX_QUESTION_CHARS],
                f"Please keep a question under {MAX_QUESTION_CHARS} characters.",
            )

        def answer() -> str:
            history = store.chat_history(frame_id)
            text = chat_fn(reject, history, question)
            store.append_chat(frame_id, "user", question)
            store.append_chat(frame_id, "assistant", text)
            return text

        if chat_waiting[0] >= CHAT_WAITING:
            return await run_in_threadpool(
                reject_page,
                request,
                reject,
                503,
                question,
                "The assistant is busy with other questions. Please try again in a minute.",
            )
        chat_waiting[0] += 1
        try:
            future = asyncio.get_running_loop().run_in_executor(chat_pool, answer)
            await asyncio.wait_for(future, settings.chat_timeout_s)
        except TimeoutError:
            log.warning("chat for %s: no answer within %.0f s", frame_id, settings.chat_timeout_s)
            return await run_in_threadpool(
                reject_page,
                request,
                reject,
                504,
                question,
                f"The assistant did not answer within {settings.chat_timeout_s:.0f} s."
                " Please try again later.",
            )
        except Exception as exc:  # the assistant's failure must not lose the question
            log.exception("chat failed for %s", frame_id)
            return await run_in_threadpool(
                reject_page,
                request,
                reject,
                502,
                question,
                f"The assistant could not answer ({type(exc).__name__}). Please try again.",
            )
        finally:
            chat_waiting[0] -= 1
        return RedirectResponse(f"/rejects/{quote(frame_id, safe='')}#chat-end", 303)

    def user_of(request: Request) -> str:
        found = auth.user_of(
            request.headers.get("authorization"), request.cookies.get(COOKIE_NAME)
        )
        return found or "unknown"  # the guard let it in, so it is one of the two

    @app.post("/rejects/{frame_id}/feedback")
    async def feedback_form(request: Request, frame_id: str) -> Response:
        """The page's buttons: label this reject confirmed or a false reject, with a note."""
        reject = await run_in_threadpool(load, frame_id)
        if reject is None:
            return not_found(request)
        form = await _form(request)
        try:
            label, note = check_feedback(form.get("label"), form.get("note", ""))
        except FeedbackError as exc:
            return await run_in_threadpool(reject_page, request, reject, 422, "", "", str(exc))
        await run_in_threadpool(
            store.add_feedback, label, user_of(request), "web", note, frame_id
        )
        return RedirectResponse(f"/rejects/{quote(frame_id, safe='')}#feedback", 303)

    @app.post("/api/rejects/{cell_id}/feedback")
    async def feedback_api(request: Request, cell_id: str) -> JSONResponse:
        """``{"label": "confirmed" | "false_reject", "note": "..."}`` for the newest reject of
        ``cell_id``; answers the stored feedback, with the user it was recorded under."""
        body = await _body(request)
        if body is None:
            return JSONResponse({"detail": "body too large"}, status_code=413)
        try:
            data = json.loads(body.decode("utf-8"))
            if not isinstance(data, dict):
                raise FeedbackError("the body must be a JSON object with label and note")
            label, note = check_feedback(data.get("label"), data.get("note", ""))
        except (ValueError, RecursionError) as exc:  # FeedbackError, bad JSON, bad UTF-8
            return JSONResponse({"detail": str(exc)[:300]}, status_code=422)
        try:
            stored = await run_in_threadpool(
                store.add_feedback, label, user_of(request), "api", note, None, cell_id
            )
        except KeyError:
            return JSONResponse({"detail": f"no reject of cell {cell_id!r}"}, status_code=404)
        return JSONResponse(stored, status_code=201)

    app.router.on_shutdown.append(lambda: chat_pool.shutdown(wait=False, cancel_futures=True))
    return app


def _same_origin(request: Request) -> bool:
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
