"""The rejects: ``/`` (to the list), the list of recent rejects with its filters, and one
reject's page (pictures, regions, explanation, chat and feedback).

``load_reject`` and ``reject_page`` are shared with the chat and feedback routes, which answer
with the reject's page again when a form needs correcting.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from inspector.web import present
from inspector.web.deps import RejectStore, State, WebState
from inspector.web.pictures import stored_file

router = APIRouter()


def load_reject(store: RejectStore, frame_id: str) -> dict | None:
    """The reject of ``frame_id`` as the page shows it, or None if there is none."""
    reject = store.reject(frame_id)
    return present.result_of(reject) if reject else None


def reject_page(
    web: WebState,
    request: Request,
    reject: dict,
    status: int = 200,
    question: str = "",
    error: str = "",
    feedback_error: str = "",
) -> HTMLResponse:
    """One reject's page; ``question`` and the errors refill the chat and feedback forms."""
    frame_id = reject["frame_id"]
    return web.pages.render(
        request,
        "reject.html",
        status=status,
        r=reject,
        regions=present.region_rows(reject),
        explanation=web.store.explanation(frame_id),
        history=web.store.chat_history(frame_id),
        feedback=web.store.feedback_history(frame_id),
        has_image=stored_file(web.data_dir, reject.get("image_path")) is not None,
        has_map=stored_file(web.data_dir, reject.get("map_path")) is not None,
        question=question,
        error=error,
        feedback_error=feedback_error,
    )


@router.get("/")
def home() -> Response:
    return RedirectResponse("/rejects", status_code=303)


@router.get("/rejects", response_class=HTMLResponse)
def reject_list(
    request: Request,
    web: State,
    period: str | None = None,
    product: str | None = None,
    station: str | None = None,
    n: int | None = None,
) -> HTMLResponse:
    """The newest rejects matching the filters, ``web.page_size`` at a time (``n`` for more)."""
    page_size = web.settings.page_size
    filters = present.Filters.parse(period, product, station)
    limit = min(max(n or page_size, 1), 20 * page_size)
    rows = web.store.rejects(
        since=filters.since(),
        product=filters.product or None,
        station=filters.station or None,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = [present.result_of(r) for r in rows[:limit]]
    return web.pages.render(
        request,
        "list.html",
        rows=rows,
        filters=filters,
        periods=present.PERIODS,
        more=more,
        more_n=limit + page_size,
    )


@router.get("/rejects/{frame_id}", response_class=HTMLResponse)
def reject_view(request: Request, frame_id: str, web: State) -> HTMLResponse:
    reject = load_reject(web.store, frame_id)
    return reject_page(web, request, reject) if reject else web.pages.not_found(request)
