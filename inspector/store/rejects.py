"""Rejects as the technicians' page reads them: the result with its pictures, the state of
its explanation job, its explanation and its newest feedback label.

Example:
    >>> [r["frame_id"] for r in rejects.newest(product="pouch")]   # doctest: +SKIP
    ['f7', 'f3']
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from inspector.store.connection import Connection

_SELECT = (
    "SELECT r.*, j.state AS job_state, e.text AS text,"
    " (SELECT f.label FROM feedback f WHERE f.result_id = r.id ORDER BY f.id DESC LIMIT 1)"
    " AS feedback FROM results r"
    " LEFT JOIN jobs j ON j.result_id = r.id LEFT JOIN explanations e"
    " ON e.frame_id = r.frame_id WHERE r.verdict='fail'"
)


def reject_dict(row: sqlite3.Row) -> dict:
    """A reject as the page and the feedback dataset read it, from a row of ``results``
    joined with ``job_state``, ``text`` (the explanation) and ``feedback`` (the newest label)."""
    return {
        "id": row["id"],
        "frame_id": row["frame_id"],
        "cell_id": row["cell_id"],
        "product": row["product"],
        "station": row["station"],
        "ts": row["ts"],
        "result": json.loads(row["payload"]),
        "image_path": Path(row["image_path"]) if row["image_path"] else None,
        "map_path": Path(row["map_path"]) if row["map_path"] else None,
        "job_state": row["job_state"],
        "explanation": row["text"],
        "feedback": row["feedback"],
    }


class Rejects:
    """Read-only queries over the rejects (``verdict`` ``fail``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def newest(
        self,
        since: datetime | str | None = None,
        product: str | None = None,
        station: str | None = None,
        limit: int = 100,
    ) -> list[dict]:
        """Rejects, newest first, optionally since a time (ISO string or datetime); ``product``
        matches whole words of the product, any case."""
        sql, args = _SELECT, []
        if since is not None:
            if isinstance(since, datetime):
                since = since.astimezone(UTC).isoformat().replace("+00:00", "Z")
            sql += " AND r.ts >= ?"
            args.append(since)
        if product is not None:  # "pouch" (a trigger's) also finds "pouch cell" (a bundle's)
            words = re.sub(r"([\\%_])", r"\\\1", product.strip().lower())
            sql += " AND (' ' || lower(r.product) || ' ') LIKE ? ESCAPE '\\'"
            args.append(f"% {words} %")
        if station is not None:
            sql += " AND r.station = ?"
            args.append(station)
        sql += " ORDER BY r.id DESC LIMIT ?"
        args.append(int(limit))
        return [reject_dict(r) for r in self._conn.rows(sql, args)]

    def get(self, frame_id: str) -> dict | None:
        """One reject by frame id, else None."""
        row = self._conn.row(
            _SELECT + " AND r.frame_id = ? ORDER BY r.id DESC LIMIT 1", (frame_id,)
        )
        return reject_dict(row) if row else None
