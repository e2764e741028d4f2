"""The results table: one row per frame, the MQTT outbox of results.

Every result is committed here before it is published and marked published when the broker
acknowledges it (``unpublished`` rows after an id, ``mark_published``), so a crash or a
broker outage loses nothing. A result that came from a file (the hot folder) also records
that file, so a crash between storing and filing it away does not inspect it twice.

Example:
    >>> [r["payload"]["frame_id"] for r in results.unpublished()]     # doctest: +SKIP
    ['f1']
    >>> results.mark_published([1])                                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from inspector.core.result import Result
from inspector.core.timestamps import utc_iso
from inspector.store.connection import Connection


def stored_result(payload: dict) -> Result:
    """The typed result of a payload about to be stored; one without a frame id or a verdict
    cannot be stored (the outbox and every reader key on them)."""
    result = Result.from_payload(payload)
    if not result.frame_id or not result.verdict:
        raise ValueError("a result needs a frame_id and a verdict to be stored")
    return result


class Results:
    """The ``results`` and ``source_files`` tables."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @staticmethod
    def add(
        db: sqlite3.Connection,
        result: dict,
        pictures: tuple[Path | None, Path | None],
        file_bytes: int,
        station_s: float,
        source_file: tuple[str, str] | None,
    ) -> int:
        """Insert one result inside the caller's transaction ``db``; returns its row id.

        The payload is stored as it is published; its frame id, cell id, product, station,
        verdict and time (now when it has none) become columns of their own.
        """
        typed = stored_result(result)
        image_path, map_path = pictures
        payload = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        row_id = db.execute(
            "INSERT INTO results (frame_id, cell_id, product, station, verdict, ts, created,"
            " payload, image_path, map_path, file_bytes, station_s)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                typed.frame_id,
                typed.cell_id or "",
                typed.product,
                typed.station,
                typed.verdict,
                typed.ts or utc_iso(),
                time.time(),
                payload,
                str(image_path) if image_path else None,
                str(map_path) if map_path else None,
                file_bytes,
                station_s,
            ),
        ).lastrowid
        if source_file is not None:
            db.execute(
                "INSERT INTO source_files (result_id, path, sha256) VALUES (?,?,?)",
                (row_id, *source_file),
            )
        return int(row_id)

    def unpublished(self, after_id: int = 0, limit: int | None = None) -> list[dict]:
        """Results not yet acknowledged, oldest first: ``{"id", "payload"}`` per row.

        ``after_id`` skips rows up to that id (the ones already handed to the client).
        """
        sql = "SELECT id, payload FROM results WHERE published_at IS NULL AND id > ? ORDER BY id"
        args: tuple = (after_id,)
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        return [
            {"id": r["id"], "payload": json.loads(r["payload"])} for r in self._conn.rows(sql, args)
        ]

    def mark_published(self, row_ids: list[int]) -> None:
        """The broker acknowledged these results (PUBACK): they leave the outbox."""
        now = time.time()
        with self._conn.tx() as db:
            db.executemany(
                "UPDATE results SET published_at=? WHERE id=? AND published_at IS NULL",
                [(now, i) for i in row_ids],
            )

    def backlog(self) -> int:
        """How many results wait for the broker."""
        return self._conn.row("SELECT COUNT(*) FROM results WHERE published_at IS NULL")[0]

    def for_file(self, path: str, sha256: str) -> tuple[int, dict, bool] | None:
        """``(row id, payload, filed)`` of the newest result for this file and content.

        A source that keeps its file until the result is stored (the hot folder) hands the
        file out again when a crash fell between the two: ``filed`` False, the verdict is
        already there. ``filed`` True: the file was filed away and has been queued again.
        By content, not by cell id (a name without one gets a new id each time) nor by time.
        """
        row = self._conn.row(
            "SELECT f.result_id, f.filed_at, r.payload FROM source_files f"
            " JOIN results r ON r.id = f.result_id WHERE f.sha256=? AND f.path=?"
            " ORDER BY f.result_id DESC LIMIT 1",
            (sha256, path),
        )
        if row is None:
            return None
        return row["result_id"], json.loads(row["payload"]), row["filed_at"] is not None

    def mark_filed(self, row_id: int) -> None:
        """The source file of result ``row_id`` has been filed away (done/ or failed/)."""
        with self._conn.tx() as db:
            db.execute(
                "UPDATE source_files SET filed_at=? WHERE result_id=?", (time.time(), row_id)
            )
