"""Salvage: the unpublished results a damaged database still holds, copied into a fresh one.

The data directory's check at start (``inspector.station.datadir``) moves a damaged database
aside; the daemon then salvages from it what it can still read, so the outbox it held is
published from the fresh store.

Example:
    >>> salvage_unpublished(conn, clock, Path("inspector.db.damaged-x"))   # doctest: +SKIP
    41
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from inspector.store.clock import StationClock
from inspector.store.connection import Connection
from inspector.store.jobs import Jobs

log = logging.getLogger("inspector.store.salvage")

VERDICTS = ("pass", "fail", "error")  # a row with another verdict is not a result of ours


def salvage_unpublished(
    conn: Connection, clock: StationClock, damaged: Path, chunk: int = 200
) -> int:
    """Copy the unpublished results ``damaged`` still holds into the database of ``conn``.

    Read-only, by ranges of row ids, so that a damaged page loses only its own rows;
    rows whose payload does not parse are skipped. The copies keep their ``frame_id``
    (consumers deduplicate) and go out through the outbox; a salvaged reject gets an
    explanation job again. Returns the number of results salvaged.
    """
    try:
        src = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        log.error("nothing salvaged from %s: %s", damaged, exc)
        return 0
    salvaged = skipped = 0
    try:
        try:
            top = src.execute("SELECT MAX(id) FROM results").fetchone()[0] or 0
        except sqlite3.DatabaseError as exc:
            log.error("nothing salvaged from %s: %s", damaged, exc)
            return 0
        for start in range(1, top + 1, chunk):
            try:
                rows = src.execute(
                    "SELECT frame_id, cell_id, product, station, verdict, ts, created,"
                    " payload, image_path, map_path FROM results NOT INDEXED"
                    " WHERE id BETWEEN ? AND ? AND published_at IS NULL ORDER BY id",
                    (start, start + chunk - 1),
                ).fetchall()
            except sqlite3.DatabaseError:
                skipped += 1
                continue
            with conn.tx() as db:
                salvaged += sum(_insert(db, row, clock.seconds()) for row in rows)
    finally:
        src.close()
    if salvaged or skipped:
        log.warning(
            "salvaged %d unpublished result(s) from %s (%d damaged range(s) of %d ids unreadable)",
            salvaged,
            damaged,
            skipped,
            chunk,
        )
    return salvaged


def _insert(db: sqlite3.Connection, row: tuple, station_s: float) -> bool:
    """Copy one row of the damaged database, unless it is not a sound result; True if copied."""
    frame_id, cell_id, product, station, verdict, ts, created, payload, img, amap = row
    try:
        ok = isinstance(json.loads(payload), dict)
    except (TypeError, ValueError):
        ok = False
    if not ok or not isinstance(frame_id, str) or verdict not in VERDICTS:
        return False
    img = img if isinstance(img, str) and Path(img).is_file() else None
    amap = amap if isinstance(amap, str) and Path(amap).is_file() else None
    row_id = db.execute(
        "INSERT INTO results (frame_id, cell_id, product, station, verdict, ts,"
        " created, payload, image_path, map_path, station_s)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            frame_id,
            str(cell_id),
            product,
            station,
            verdict,
            str(ts),
            created,
            payload,
            img,
            amap,
            station_s,
        ),
    ).lastrowid
    if verdict == "fail":
        Jobs.add(db, row_id, frame_id)
    return True
