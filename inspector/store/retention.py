"""Retention: old results and their pictures leave the data directory, by age and by size.

Never deleted: a result not yet published, a reject whose explanation job is not done or whose
explanation is not yet published, and a reject with feedback (a dataset needs it).

Example:
    >>> retention.apply(max_age_s=30 * 86400, max_bytes=20 * 10**9)   # doctest: +SKIP
    12
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from inspector.store.clock import StationClock
from inspector.store.connection import Connection

log = logging.getLogger("inspector.store.retention")

_DELETABLE = (
    "published_at IS NOT NULL AND NOT EXISTS"
    " (SELECT 1 FROM jobs j WHERE j.result_id = results.id AND j.state != 'done')"
    " AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.result_id = results.id)"
    " AND NOT EXISTS (SELECT 1 FROM explanations e"
    " WHERE e.frame_id = results.frame_id AND e.published_at IS NULL)"
)


class Retention:
    """Measures what the store takes on disk and deletes what it may."""

    def __init__(self, conn: Connection, clock: StationClock, data_dir: Path) -> None:
        self._conn = conn
        self._clock = clock
        self.data_dir = Path(data_dir)

    def disk_bytes(self) -> int:
        """Bytes used by the database's live pages and the saved reject pictures."""
        pages = self._conn.row("PRAGMA page_count")[0]
        free = self._conn.row("PRAGMA freelist_count")[0]
        page = self._conn.row("PRAGMA page_size")[0]
        files = self._conn.row("SELECT COALESCE(SUM(file_bytes),0) FROM results")[0]
        return int((pages - free) * page + files)

    def free_bytes(self) -> int:
        """Free space on the data directory's file system."""
        return shutil.disk_usage(self.data_dir).free

    def apply(self, max_age_s: float, max_bytes: int) -> int:
        """Delete old results, then the oldest (pictures first) until under ``max_bytes``.

        A result is old when both the wall clock and the station clock say it is older than
        ``max_age_s``: a wall clock that jumps (set to 2000 at boot, then corrected by NTP)
        deletes nothing early. Logs what it deletes. Returns the number of results deleted.
        """
        deleted = self._delete_old(max_age_s) + self._shrink_to(max_bytes)
        self._clock.save()
        if deleted:
            self._conn.fold_wal()
        return deleted

    def _delete_old(self, max_age_s: float) -> int:
        old = self._conn.rows(
            f"SELECT id, frame_id, image_path, map_path, created FROM results"
            f" WHERE created < ? AND COALESCE(station_s, 0) < ? AND {_DELETABLE} ORDER BY id",
            (time.time() - max_age_s, self._clock.seconds() - max_age_s),
        )
        if not old:
            return 0
        self._delete(old)
        _log_deleted(old, f"older than {max_age_s / 86400:g} days (retention.max_age_days)")
        return len(old)

    def _shrink_to(self, max_bytes: int) -> int:
        deleted = 0
        excess = self.disk_bytes() - max_bytes
        while excess > 0:
            candidates = self._conn.rows(
                f"SELECT id, frame_id, image_path, map_path, created,"
                f" file_bytes + LENGTH(payload) AS size FROM results WHERE {_DELETABLE}"
                f" ORDER BY (file_bytes > 0) DESC, id LIMIT 500"
            )
            batch, freed = [], 0
            for row in candidates:
                batch.append(row)
                freed += row["size"]
                if freed >= excess:
                    break
            if not batch:
                log.warning(
                    "retention: %.0f MB over retention.max_disk_gb, but nothing left that may"
                    " be deleted (unpublished or unexplained)",
                    excess / 1e6,
                )
                break
            self._delete(batch)
            deleted += len(batch)
            _log_deleted(batch, f"to stay under {max_bytes / 1e9:g} GB (retention.max_disk_gb)")
            excess = self.disk_bytes() - max_bytes
        return deleted

    def _delete(self, rows: list[sqlite3.Row]) -> None:
        """Delete results with their pictures, jobs, feedback, source files, explanations and
        chats."""
        ids = [r["id"] for r in rows]
        for r in rows:
            for p in (r["image_path"], r["map_path"]):
                if p:
                    Path(p).unlink(missing_ok=True)
        with self._conn.tx() as db:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                frames = [
                    r["frame_id"]
                    for r in db.execute(
                        f"SELECT frame_id FROM results WHERE id IN ({marks}) AND verdict='fail'",
                        chunk,
                    )
                ]
                db.execute(f"DELETE FROM jobs WHERE result_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM feedback WHERE result_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM source_files WHERE result_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM results WHERE id IN ({marks})", chunk)
                for f in frames:
                    db.execute("DELETE FROM explanations WHERE frame_id=?", (f,))
                    db.execute("DELETE FROM chat WHERE frame_id=?", (f,))


def _log_deleted(rows: list[sqlite3.Row], why: str) -> None:
    def when(row: sqlite3.Row) -> str:
        return datetime.fromtimestamp(row["created"], UTC).isoformat(timespec="seconds")

    ids = [r["id"] for r in rows]
    log.info(
        "retention: deleted %d result(s) %s: ids %d..%d, stored %s..%s",
        len(rows),
        why,
        min(ids),
        max(ids),
        when(min(rows, key=lambda r: r["created"])),
        when(max(rows, key=lambda r: r["created"])),
    )
