"""Explanations of rejects: one per frame, stored before they are published (an outbox, as
the results are: ``unpublished`` rows after an id, ``mark_published`` on the broker's PUBACK).

Example:
    >>> [r["payload"]["frame_id"] for r in explanations.unpublished()]   # doctest: +SKIP
    ['f1']
    >>> explanations.mark_published([1])  # doctest: +SKIP
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

from inspector.store.connection import Connection


class Explanations:
    """The ``explanations`` table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @staticmethod
    def add(db: sqlite3.Connection, frame_id: str, text: str, backend: str) -> None:
        """Store (or replace) the explanation of ``frame_id``, unpublished, inside the caller's
        transaction ``db``; a replaced one goes out again, after the older ones."""
        db.execute(
            "INSERT OR REPLACE INTO explanations (frame_id, text, backend, created,"
            " published_at) VALUES (?,?,?,?,NULL)",
            (frame_id, text, backend, time.time()),
        )

    def unpublished(self, after_id: int = 0, limit: int | None = None) -> list[dict]:
        """Explanations not yet acknowledged by the broker, oldest first: ``{"id", "payload"}``
        per row, the payload ``{cell_id, frame_id, text, backend}``.

        ``after_id`` skips rows up to that id (the ones already handed to the client).
        """
        sql = (
            "SELECT e.id, e.frame_id, e.text, e.backend, COALESCE((SELECT r.cell_id FROM"
            " results r WHERE r.frame_id = e.frame_id LIMIT 1), '') AS cell_id"
            " FROM explanations e WHERE e.published_at IS NULL AND e.id > ? ORDER BY e.id"
        )
        args: tuple = (after_id,)
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        return [
            {
                "id": r["id"],
                "payload": {
                    "cell_id": r["cell_id"],
                    "frame_id": r["frame_id"],
                    "text": r["text"],
                    "backend": r["backend"],
                },
            }
            for r in self._conn.rows(sql, args)
        ]

    def mark_published(self, row_ids: list[int]) -> None:
        """The broker acknowledged these explanations (PUBACK): they leave the outbox."""
        now = time.time()
        with self._conn.tx() as db:
            db.executemany(
                "UPDATE explanations SET published_at=? WHERE id=? AND published_at IS NULL",
                [(now, i) for i in row_ids],
            )

    def get(self, frame_id: str) -> dict | None:
        """``{frame_id, text, backend, ts}`` of an explained reject, else None."""
        row = self._conn.row(
            "SELECT frame_id, text, backend, created FROM explanations WHERE frame_id=?",
            (frame_id,),
        )
        if row is None:
            return None
        ts = datetime.fromtimestamp(row["created"], UTC).isoformat(timespec="seconds")
        return {
            "frame_id": row["frame_id"],
            "text": row["text"],
            "backend": row["backend"],
            "ts": ts,
        }
