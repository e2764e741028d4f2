"""A technician's label for a reject (confirmed or a false reject, with a note): from the
reject page's buttons, or as JSON for the newest reject of a cell.

The feedback is recorded under the user the request logged in as (``web.username`` or
``token``), with the channel it came by (``web`` or ``api``).
"""

from __future__ import annotations

import json
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response

from inspector.comms.inbound import FeedbackError, check_feedback
from inspector.web.auth import COOKIE_NAME
from inspector.web.deps import State, WebState
from inspector.web.forms import read_body, read_form
from inspector.web.routers.rejects import load_reject, reject_page

router = APIRouter()


def user_of(web: WebState, request: Request) -> str:
    """Who sent ``request``, by its ``Authorization`` header or its login cookie."""
    found = web.auth.user_of(request.headers.get("authorization"), request.cookies.get(COOKIE_NAME))
    return found or "unknown"  # the guard let it in, so it is one of the two


@router.post("/rejects/{frame_id}/feedback")
async def feedback_form(request: Request, frame_id: str, web: State) -> Response:
    """The page's buttons: label this reject confirmed or a false reject, with a note."""
    reject = await run_in_threadpool(load_reject, web.store, frame_id)
    if reject is None:
        return web.pages.not_found(request)
    form = await read_form(request)
    try:
        label, note = check_feedback(form.get("label"), form.get("note", ""))
    except FeedbackError as exc:
        return await run_in_threadpool(reject_page, web, request, reject, 422, "", "", str(exc))
    await run_in_threadpool(
        web.store.add_feedback, label, user_of(web, request), "web", note, frame_id
    )
    return RedirectResponse(f"/rejects/{quote(frame_id, safe='')}#feedback", 303)


@router.post("/api/rejects/{cell_id}/feedback")
async def feedback_api(request: Request, cell_id: str, web: State) -> JSONResponse:
    """``{"label": "confirmed" | "false_reject", "note": "..."}`` for the newest reject of
    ``cell_id``; answers the stored feedback, with the user it was recorded under."""
    body = await read_body(request)
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
            web.store.add_feedback, label, user_of(web, request), "api", note, None, cell_id
        )
    except KeyError:
        return JSONResponse({"detail": f"no reject of cell {cell_id!r}"}, status_code=404)
    return JSONResponse(stored, status_code=201)
