"""``GET /health``: liveness for monitoring, open to all and saying nothing about the rejects."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()


@router.get("/health")
async def health() -> dict:  # async: answers even when every worker thread is busy
    """Liveness for monitoring; open to all and says nothing about the rejects."""
    return {"status": "ok"}
