"""``GET /static/{name}``: the stylesheet and icons, from memory (read once at start)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from inspector.web.deps import State

router = APIRouter()


@router.get("/static/{name}")
def static_file(name: str, web: State) -> Response:
    """One bundled file by name; nothing else is looked up."""
    if name not in web.static:
        return Response("not found", status_code=404, media_type="text/plain")
    body, media_type = web.static[name]
    return Response(body, media_type=media_type, headers={"Cache-Control": "max-age=3600"})
