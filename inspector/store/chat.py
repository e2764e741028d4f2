"""The chat about a reject: the technician's questions and the explainer's answers, in order.

Example:
    >>> chat.append("f1", "user", "How big is it?")        # doctest: +SKIP
    >>> chat.history("f1")                                  # doctest: +SKIP
    [{'role': 'user', 'text': 'How big is it?', 'ts': '2026-11-25T09:30:00.123Z'}]
"""

from __future__ import annotations

from inspector.core.timestamps import utc_iso
from inspector.store.connection import Connection


class Chat:
    """The ``chat`` table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def history(self, frame_id: str) -> list[dict]:
        """The chat about one reject, oldest first: ``{role, text, ts}``."""
        rows = self._conn.rows(
            "SELECT role, text, ts FROM chat WHERE frame_id=? ORDER BY id", (frame_id,)
        )
        return [dict(r) for r in rows]

    def append(self, frame_id: str, role: str, text: str) -> None:
        """Add one turn (``user`` or ``assistant``) to the chat about a reject."""
        with self._conn.tx() as db:
            db.execute(
                "INSERT INTO chat (frame_id, role, text, ts) VALUES (?,?,?,?)",
                (frame_id, role, text, utc_iso()),
            )
