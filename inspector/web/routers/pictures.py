"""A reject's pictures as PNG: the frame, the frame with heat map and regions, a thumbnail.

Looked up by frame id in the store, never by a path taken from the request; a missing reject
or picture is a plain-text 404.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from inspector.web.deps import State, WebState
from inspector.web.pictures import PictureMissing
from inspector.web.routers.rejects import load_reject

router = APIRouter()


def picture(web: WebState, frame_id: str, kind: str) -> Response:
    """The ``image``, ``overlay`` or ``thumb`` PNG of one reject."""
    reject = load_reject(web.store, frame_id)
    if reject is None:
        return Response("no such reject", status_code=404, media_type="text/plain")
    make = {
        "image": web.pictures.image_png,
        "overlay": web.pictures.overlay_png,
        "thumb": web.pictures.thumb_png,
    }[kind]
    try:
        data = make(reject)
    except PictureMissing as exc:
        return Response(f"no picture: {exc}", status_code=404, media_type="text/plain")
    return Response(data, media_type="image/png", headers={"Cache-Control": "private"})


@router.get("/rejects/{frame_id}/image")
def image(frame_id: str, web: State) -> Response:
    """The frame as stored, as an 8-bit PNG."""
    return picture(web, frame_id, "image")


@router.get("/rejects/{frame_id}/overlay")
def overlay(frame_id: str, web: State) -> Response:
    """The frame with heat map and numbered region boxes, at the frame's size."""
    return picture(web, frame_id, "overlay")


@router.get("/rejects/{frame_id}/thumb")
def thumb(frame_id: str, web: State) -> Response:
    return picture(web, frame_id, "thumb")
