"""Technicians' labels of rejects (``confirmed`` / ``false_reject``), from the page or MQTT,
and the frames a feedback dataset is built from.

Example:
    >>> feedback.add("false_reject", "ana", "web", frame_id="f1")   # doctest: +SKIP
    >>> [r["label"] for r in feedback.labelled()]                    # doctest: +SKIP
    ['false_reject', 'pass']
"""

from __future__ import annotations

from inspector.core.timestamps import utc_iso
from inspector.store.connection import Connection
from inspector.store.rejects import reject_dict

LABELS = ("confirmed", "false_reject")  # what a technician may say about a reject


class Feedback:
    """The ``feedback`` table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(
        self,
        label: str,
        user: str,
        channel: str,
        note: str = "",
        frame_id: str | None = None,
        cell_id: str | None = None,
    ) -> dict:
        """Label a reject ``confirmed`` or ``false_reject``; the newest label of a reject counts.

        The reject is found by ``frame_id``, else by ``cell_id`` (its newest reject: a cell
        inspected twice). Returns the stored feedback as ``history`` gives it.

        Raises:
            ValueError: an unknown label.
            KeyError: no such reject.
        """
        if label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
        if frame_id is not None:
            where, key = "frame_id = ?", frame_id
        elif cell_id is not None:
            where, key = "cell_id = ?", cell_id
        else:
            raise ValueError("feedback needs a frame_id or a cell_id")
        ts = utc_iso()
        with self._conn.tx() as db:
            row = db.execute(
                f"SELECT id, frame_id, cell_id FROM results WHERE {where} AND verdict='fail'"
                " ORDER BY id DESC LIMIT 1",
                (key,),
            ).fetchone()
            if row is None:
                raise KeyError(f"no reject with {where.split()[0]} {key!r}")
            db.execute(
                "INSERT INTO feedback (result_id, frame_id, cell_id, label, note, user, channel,"
                " ts) VALUES (?,?,?,?,?,?,?,?)",
                (row["id"], row["frame_id"], row["cell_id"], label, note, user, channel, ts),
            )
        return {
            "frame_id": row["frame_id"],
            "cell_id": row["cell_id"],
            "label": label,
            "note": note,
            "user": user,
            "channel": channel,
            "ts": ts,
        }

    def history(self, frame_id: str) -> list[dict]:
        """Every label given to one reject, oldest first:
        ``{frame_id, cell_id, label, note, user, channel, ts}``."""
        rows = self._conn.rows(
            "SELECT frame_id, cell_id, label, note, user, channel, ts FROM feedback"
            " WHERE frame_id=? ORDER BY id",
            (frame_id,),
        )
        return [dict(r) for r in rows]

    def labelled(self) -> list[dict]:
        """Frames for a feedback dataset, oldest first: each labelled reject with its newest
        label, and each kept passed frame (label ``pass``). Dicts as ``Rejects.get`` gives
        them, with ``label``, ``note`` and ``user``."""
        sql = (
            "SELECT r.*, NULL AS job_state, NULL AS text, f.label AS feedback, f.label AS label,"
            " f.note AS note, f.user AS user FROM results r JOIN feedback f ON f.result_id = r.id"
            " WHERE f.id = (SELECT MAX(id) FROM feedback WHERE result_id = r.id)"
            " UNION ALL SELECT r.*, NULL, NULL, NULL, 'pass', '', '' FROM results r"
            " WHERE r.verdict = 'pass' AND r.image_path IS NOT NULL ORDER BY id"
        )
        return [
            reject_dict(r) | {"label": r["label"], "note": r["note"], "user": r["user"]}
            for r in self._conn.rows(sql)
        ]
