"""Results, reject pictures and explanation jobs in SQLite (WAL) under the data directory.

The result table is the MQTT outbox: every result is committed here before it is published
and marked published when the broker acknowledges it, so a crash or a broker outage loses
nothing (a result may be published twice, with the same ``frame_id``). A reject also saves
its frame (lossless PNG) and anomaly map (``.npy`` float32, frame size) and becomes an
explanation job for the explainer process, which opens the same database.

Example:
    >>> store = Store(Path(tempfile.mkdtemp()))                     # doctest: +SKIP
    >>> row = store.record({"frame_id": "f1", "cell_id": "c1", "verdict": "pass"}, None, None)
    >>> [r["frame_id"] for r in store.unpublished()]                  # doctest: +SKIP
    ['f1']
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from inspector.core.timestamps import utc_iso

log = logging.getLogger("inspector.store.db")

DB_FILE = "inspector.db"
REJECTS_DIR = "rejects"
PASSED_DIR = "passed"  # the kept sample of passed frames (feedback.keep_passed_every)
LABELS = ("confirmed", "false_reject")  # what a technician may say about a reject
JOB_LEASE_S = 600.0
VERDICTS = ("pass", "fail", "error")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    frame_id TEXT NOT NULL,
    cell_id TEXT NOT NULL,
    product TEXT,
    station TEXT,
    verdict TEXT NOT NULL,
    ts TEXT NOT NULL,
    created REAL NOT NULL,
    payload TEXT NOT NULL,
    published_at REAL,
    image_path TEXT,
    map_path TEXT,
    file_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS results_frame ON results(frame_id);
CREATE INDEX IF NOT EXISTS results_unpublished ON results(id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS results_rejects ON results(verdict, ts);
CREATE INDEX IF NOT EXISTS results_cell ON results(cell_id, ts);
CREATE INDEX IF NOT EXISTS results_ts ON results(ts);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    result_id INTEGER NOT NULL REFERENCES results(id),
    frame_id TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    lease_until REAL,
    error TEXT,
    created REAL NOT NULL,
    claimed_by TEXT
);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs(state, id);
CREATE TABLE IF NOT EXISTS explanations (
    frame_id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    backend TEXT NOT NULL,
    created REAL NOT NULL,
    published_at REAL
);
CREATE TABLE IF NOT EXISTS chat (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    frame_id TEXT NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    ts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_frame ON chat(frame_id, id);
CREATE TABLE IF NOT EXISTS source_files (
    result_id INTEGER PRIMARY KEY REFERENCES results(id),
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    filed_at REAL
);
CREATE INDEX IF NOT EXISTS source_files_content ON source_files(sha256);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    result_id INTEGER NOT NULL REFERENCES results(id),
    frame_id TEXT NOT NULL,
    cell_id TEXT NOT NULL,
    label TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    user TEXT NOT NULL,
    channel TEXT NOT NULL,
    ts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_result ON feedback(result_id, id);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value REAL NOT NULL
);
"""
# columns added after the first release: (table, column, type, value for old rows)
_ADDED_COLUMNS = (
    ("results", "station_s", "REAL", None),
    ("jobs", "claimed_by", "TEXT", None),
    # explanations stored before the outbox were published at once: do not send them again
    ("explanations", "published_at", "REAL", "created"),
)


def process_tag(pid: int | None = None) -> str:
    """``host:pid:start`` of a process (start: its start time in clock ticks since boot, so
    a recycled pid does not pass for the process that died)."""
    pid = os.getpid() if pid is None else pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{socket.gethostname()}:{pid}:{start}"


def process_gone(tag: str | None) -> bool:
    """True when ``tag`` (from ``process_tag``) names a process of this host that has ended.
    Processes of other hosts, and tags that cannot be read, count as alive."""
    try:
        host, pid, start = (tag or "").rsplit(":", 2)
        pid_n = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname() or start == "?":
        return False
    return process_tag(pid_n) != tag


@dataclass
class Job:
    """One reject waiting for an explanation."""

    id: int
    frame_id: str
    cell_id: str
    product: str | None
    result: dict
    image_path: Path | None
    map_path: Path | None
    attempts: int


def _write_files(
    image_path: Path | None, image: np.ndarray | None, map_path: Path | None, amap
) -> int:
    """Write a reject's PNG and map; returns the bytes written."""
    size = 0
    if image_path is not None:
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise OSError(f"could not encode the PNG {image_path.name}")
        buf.tofile(image_path)
        size += image_path.stat().st_size
    if map_path is not None:
        np.save(map_path, np.asarray(amap, dtype=np.float32))
        size += map_path.stat().st_size
    return size


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:120] or "frame"


class Store:
    """The daemon's SQLite store; safe to share between threads of one process.

    Several processes (daemon, explainer, web page) may open the same data directory: WAL
    lets readers run beside the one writer, and writes wait up to 30 s for the lock.
    """

    def __init__(
        self, data_dir: Path, synchronous: str = "NORMAL", autocheckpoint: bool = True
    ) -> None:
        self.data_dir = Path(data_dir)
        self.rejects_dir = self.data_dir / REJECTS_DIR
        self.rejects_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_FILE
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; a power cut may lose the last commits
        # but never corrupts the database. FULL also survives a power cut, at an fsync per result.
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:  # the owner calls checkpoint() off the write path instead
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._add_columns()
        self._files: queue.Queue | None = None
        self._files_thread: threading.Thread | None = None
        self._clock_base = self._saved_clock()
        self._clock_t0 = time.monotonic()
        self._clock_owner = False  # only a store that records results moves the clock on

    def _add_columns(self) -> None:
        """Bring a database of an older release up to the current columns (in one write
        transaction, so two processes opening it at once do not both add a column)."""
        with self._tx() as db:
            for table, column, kind, old_value in _ADDED_COLUMNS:
                have = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    if old_value is not None:
                        db.execute(f"UPDATE {table} SET {column} = {old_value}")

    # --- the station clock: seconds of daemon running time, immune to wall-clock jumps ------

    def _saved_clock(self) -> float:
        with self._lock:
            saved = self._db.execute("SELECT value FROM meta WHERE key='station_s'").fetchone()
            newest = self._db.execute(  # rows carry the clock in id order
                "SELECT station_s FROM results ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return max(saved[0] if saved else 0.0, (newest[0] if newest else None) or 0.0)

    def station_seconds(self) -> float:
        """Seconds the daemon has run on this database, over all its runs: a clock that a
        wrong or jumping wall clock (a box without a battery-backed clock, before NTP) cannot
        move. Retention measures age by it as well as by the wall clock."""
        return self._clock_base + time.monotonic() - self._clock_t0

    def save_clock(self) -> None:
        """Keep the station clock over a restart (results also carry it, see ``record``)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('station_s', ?) ON CONFLICT(key)"
                " DO UPDATE SET value = MAX(value, excluded.value)",
                (self.station_seconds(),),
            )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Finish deferred pictures, close the database (the WAL is folded back)."""
        if self._files is not None:
            self._files.put(None)
            self._files_thread.join()
            self._files = None
        with self._lock:
            with suppress(sqlite3.Error):
                if self._clock_owner:
                    self.save_clock()
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the database from a separate connection (PASSIVE: writers on
        the main connection are not blocked, so no result waits for the fsync)."""
        db = sqlite3.connect(self.path, timeout=5.0)
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    # --- results: the outbox -------------------------------------------------------------

    def record(
        self,
        result: dict,
        image: np.ndarray | None,
        amap: np.ndarray | None,
        defer_files: bool = False,
        source_file: tuple[str, str] | None = None,
        keep_image: bool = False,
    ) -> int:
        """Store one result before it is published; a reject also saves its pictures and job.

        Args:
            result: the MQTT result payload (``frame_id``, ``cell_id``, ``verdict``, ...).
            image: the frame, saved losslessly for rejects (ignored otherwise).
            amap: the anomaly map at frame resolution, saved for rejects as float32 ``.npy``.
            defer_files: return once the row is committed and let a background writer save
                the reject's pictures (a 5 MP PNG takes ~0.1 s); its job becomes claimable
                only when they are on disk. ``flush_files()`` waits for the writer.
            source_file: ``(path, sha256)`` of the file the frame came from (hot folder):
                ``result_for_file`` finds the result by it after a crash.
            keep_image: also save the frame of a ``pass`` (the sample of passed frames kept
                for feedback datasets), under ``passed/``; it has no map and no job.

        Returns:
            The row id, which ``mark_published_many`` takes once the broker has it.
        """
        reject = result.get("verdict") == "fail"
        kept = keep_image and result.get("verdict") == "pass" and image is not None
        image_path = map_path = None
        if reject or kept:
            day = datetime.now(UTC).strftime("%Y-%m-%d")
            folder = (self.rejects_dir if reject else self.data_dir / PASSED_DIR) / day
            folder.mkdir(parents=True, exist_ok=True)
            stem = _safe_name(str(result["frame_id"]))
            image_path = folder / f"{stem}.png" if image is not None else None
            map_path = folder / f"{stem}_map.npy" if reject and amap is not None else None
        write_later = defer_files and (image_path or map_path)
        file_bytes = 0 if write_later else _write_files(image_path, image, map_path, amap)
        now = time.time()
        self._clock_owner = True
        payload = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO results (frame_id, cell_id, product, station, verdict, ts, created,"
                " payload, image_path, map_path, file_bytes, station_s)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    str(result["frame_id"]),
                    str(result.get("cell_id", "")),
                    result.get("product"),
                    result.get("station"),
                    str(result["verdict"]),
                    str(result.get("ts") or utc_iso()),
                    now,
                    payload,
                    str(image_path) if image_path else None,
                    str(map_path) if map_path else None,
                    file_bytes,
                    self.station_seconds(),
                ),
            )
            row_id = int(cur.lastrowid)
            if source_file is not None:
                db.execute(
                    "INSERT INTO source_files (result_id, path, sha256) VALUES (?,?,?)",
                    (row_id, *source_file),
                )
            job_id = None
            if reject:
                job_id = db.execute(
                    "INSERT INTO jobs (result_id, frame_id, state, created) VALUES (?,?,?,?)",
                    (row_id, str(result["frame_id"]), "saving" if write_later else "queued", now),
                ).lastrowid
        if write_later:
            self._writer().put((row_id, job_id, image_path, image, map_path, amap))
        return row_id

    def _writer(self) -> queue.Queue:
        if self._files is None:
            # bounded: rejects faster than the disk hold the pipeline back instead of memory
            self._files = queue.Queue(maxsize=16)
            self._files_thread = threading.Thread(
                target=self._write_loop, name="reject-writer", daemon=True
            )
            self._files_thread.start()
        return self._files

    def _write_loop(self) -> None:
        while True:
            item = self._files.get()
            try:
                if item is None:
                    return
                row_id, job_id, image_path, image, map_path, amap = item
                error = None
                try:
                    size = _write_files(image_path, image, map_path, amap)
                except Exception as exc:  # disk full...: explain from the facts alone
                    log.exception("saving the pictures of result %s failed", row_id)
                    error, size = f"pictures not saved: {exc}", 0
                try:
                    self._files_saved(row_id, job_id, size, error)
                except Exception:  # disk full, locked: the job stays 'saving' until next start
                    log.exception("recording the pictures of result %s failed", row_id)
            finally:
                self._files.task_done()

    def _files_saved(self, row_id: int, job_id: int, size: int, error: str | None) -> None:
        with self._tx() as db:
            if error:
                db.execute(
                    "UPDATE results SET image_path=NULL, map_path=NULL WHERE id=?", (row_id,)
                )
            db.execute("UPDATE results SET file_bytes=? WHERE id=?", (size, row_id))
            db.execute(
                "UPDATE jobs SET state='queued', error=? WHERE id=? AND state='saving'",
                (error, job_id),
            )

    def flush_files(self) -> None:
        """Wait until every deferred reject picture is on disk and its job claimable."""
        if self._files is not None:
            self._files.join()

    def recover_unsaved(self) -> int:
        """Jobs left 'saving' by a crash: queue them, forgetting pictures that never landed.

        Only the process that writes results (the daemon) calls this, at start: in any other
        process a 'saving' job may just be in the daemon's writer queue. Returns the count.
        """
        with self._tx() as db:
            rows = db.execute(
                "SELECT j.id, j.result_id, r.image_path, r.map_path FROM jobs j"
                " JOIN results r ON r.id = j.result_id WHERE j.state='saving'"
            ).fetchall()
            for row in rows:
                for col in ("image_path", "map_path"):
                    if row[col] and not Path(row[col]).is_file():
                        db.execute(f"UPDATE results SET {col}=NULL WHERE id=?", (row["result_id"],))
                db.execute("UPDATE jobs SET state='queued' WHERE id=?", (row["id"],))
        if rows:
            log.warning(
                "%d reject(s) from before a crash queued without missing pictures", len(rows)
            )
        return len(rows)

    def salvage_unpublished(self, damaged: Path, chunk: int = 200) -> int:
        """Copy the unpublished results a damaged database still holds into this store.

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
                salvaged += self._insert_salvaged(rows)
        finally:
            src.close()
        if salvaged or skipped:
            log.warning(
                "salvaged %d unpublished result(s) from %s (%d damaged range(s) of %d ids"
                " unreadable)",
                salvaged,
                damaged,
                skipped,
                chunk,
            )
        return salvaged

    def _insert_salvaged(self, rows: list[tuple]) -> int:
        n = 0
        with self._tx() as db:
            for (
                frame_id,
                cell_id,
                product,
                station,
                verdict,
                ts,
                created,
                payload,
                img,
                amap,
            ) in rows:
                try:
                    ok = isinstance(json.loads(payload), dict)
                except (TypeError, ValueError):
                    ok = False
                if not ok or not isinstance(frame_id, str) or verdict not in VERDICTS:
                    continue
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
                        self.station_seconds(),
                    ),
                ).lastrowid
                if verdict == "fail":
                    db.execute(
                        "INSERT INTO jobs (result_id, frame_id, state, created) VALUES (?,?,?,?)",
                        (row_id, frame_id, "queued", time.time()),
                    )
                n += 1
        return n

    def mark_published_many(self, row_ids: list[int]) -> None:
        """The broker acknowledged these results (PUBACK): they leave the outbox."""
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "UPDATE results SET published_at=? WHERE id=? AND published_at IS NULL",
                [(now, i) for i in row_ids],
            )

    def unpublished(self, after_id: int = 0, limit: int | None = None) -> list[dict]:
        """Results not yet acknowledged, oldest first: ``{"id", "payload"}`` per row.

        ``after_id`` skips rows up to that id (the ones already handed to the client).
        """
        sql = "SELECT id, payload FROM results WHERE published_at IS NULL AND id > ? ORDER BY id"
        args: tuple = (after_id,)
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [{"id": r["id"], "payload": json.loads(r["payload"])} for r in rows]

    def backlog(self) -> int:
        """How many results wait for the broker."""
        with self._lock:
            return self._db.execute(
                "SELECT COUNT(*) FROM results WHERE published_at IS NULL"
            ).fetchone()[0]

    def result_for_file(self, path: str, sha256: str) -> tuple[int, dict, bool] | None:
        """``(row id, payload, filed)`` of the newest result for this file and content.

        A source that keeps its file until the result is stored (the hot folder) hands the
        file out again when a crash fell between the two: ``filed`` False, the verdict is
        already there. ``filed`` True: the file was filed away and has been queued again.
        By content, not by cell id (a name without one gets a new id each time) nor by time.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT f.result_id, f.filed_at, r.payload FROM source_files f"
                " JOIN results r ON r.id = f.result_id WHERE f.sha256=? AND f.path=?"
                " ORDER BY f.result_id DESC LIMIT 1",
                (sha256, path),
            ).fetchone()
        if row is None:
            return None
        return row["result_id"], json.loads(row["payload"]), row["filed_at"] is not None

    def mark_filed(self, row_id: int) -> None:
        """The source file of result ``row_id`` has been filed away (done/ or failed/)."""
        with self._tx() as db:
            db.execute(
                "UPDATE source_files SET filed_at=? WHERE result_id=?", (time.time(), row_id)
            )

    # --- explanation jobs ----------------------------------------------------------------

    def pending_jobs(self) -> int:
        """Rejects still waiting for an explanation."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state != 'done'").fetchone()[0]

    def claim_job(self, lease_s: float = JOB_LEASE_S) -> Job | None:
        """The oldest job that is due, leased to the caller; None when there is none.

        A job whose worker died is claimable again: at once when that worker was a process
        of this host that has ended (a killed explainer), else when its lease expired.
        """
        now = time.time()
        me = process_tag()
        with self._tx() as db:
            claimed = db.execute(
                "SELECT id, frame_id, claimed_by FROM jobs WHERE state='claimed'"
            ).fetchall()
            for job in claimed:
                if job["claimed_by"] != me and process_gone(job["claimed_by"]):
                    log.warning(
                        "job %s (%s) was claimed by %s, which has ended: claimable again",
                        job["id"],
                        job["frame_id"],
                        job["claimed_by"],
                    )
                    db.execute(
                        "UPDATE jobs SET state='queued', lease_until=NULL, claimed_by=NULL"
                        " WHERE id=?",
                        (job["id"],),
                    )
            row = db.execute(
                "SELECT j.id, j.frame_id, j.attempts, r.cell_id, r.product, r.payload,"
                " r.image_path, r.map_path FROM jobs j JOIN results r ON r.id = j.result_id"
                " WHERE (j.state='queued' AND j.not_before <= ?)"
                " OR (j.state='claimed' AND j.lease_until < ?) ORDER BY j.id LIMIT 1",
                (now, now),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state='claimed', lease_until=?, attempts=attempts+1,"
                " claimed_by=? WHERE id=?",
                (now + lease_s, me, row["id"]),
            )
        return Job(
            id=row["id"],
            frame_id=row["frame_id"],
            cell_id=row["cell_id"],
            product=row["product"],
            result=json.loads(row["payload"]),
            image_path=Path(row["image_path"]) if row["image_path"] else None,
            map_path=Path(row["map_path"]) if row["map_path"] else None,
            attempts=row["attempts"] + 1,
        )

    def finish_job(self, job_id: int, text: str, backend: str) -> None:
        """Store the explanation of a claimed job (unpublished) and close the job."""
        with self._tx() as db:
            row = db.execute("SELECT frame_id FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(f"no explanation job {job_id}")
            db.execute(
                "INSERT OR REPLACE INTO explanations (frame_id, text, backend, created,"
                " published_at) VALUES (?,?,?,?,NULL)",
                (row["frame_id"], text, backend, time.time()),
            )
            db.execute(
                "UPDATE jobs SET state='done', lease_until=NULL, error=NULL, claimed_by=NULL"
                " WHERE id=?",
                (job_id,),
            )

    def fail_job(self, job_id: int, error: str, retry_in_s: float) -> None:
        """Give a claimed job back; it is due again after ``retry_in_s`` seconds."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state='queued', lease_until=NULL, error=?, not_before=?,"
                " claimed_by=NULL WHERE id=?",
                (error, time.time() + retry_in_s, job_id),
            )

    # --- explanations: their own outbox --------------------------------------------------

    def unpublished_explanations(self, limit: int = 100) -> list[dict]:
        """Stored explanations not yet acknowledged by the broker, oldest first:
        ``{frame_id, cell_id, text, backend, created}``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT e.frame_id, e.text, e.backend, e.created,"
                " (SELECT r.cell_id FROM results r WHERE r.frame_id = e.frame_id LIMIT 1)"
                " AS cell_id FROM explanations e WHERE e.published_at IS NULL"
                " ORDER BY e.rowid LIMIT ?",
                (limit,),
            ).fetchall()
        return [dict(r) for r in rows]

    def mark_explanations_published(self, frame_ids: list[str]) -> None:
        """The broker acknowledged these explanations."""
        if not frame_ids:
            return
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "UPDATE explanations SET published_at=? WHERE frame_id=?",
                [(now, f) for f in frame_ids],
            )

    def explanation(self, frame_id: str) -> dict | None:
        """``{frame_id, text, backend, ts}`` of an explained reject, else None."""
        with self._lock:
            row = self._db.execute(
                "SELECT frame_id, text, backend, created FROM explanations WHERE frame_id=?",
                (frame_id,),
            ).fetchone()
        if row is None:
            return None
        ts = datetime.fromtimestamp(row["created"], UTC).isoformat(timespec="seconds")
        return {
            "frame_id": row["frame_id"],
            "text": row["text"],
            "backend": row["backend"],
            "ts": ts,
        }

    # --- rejects and chat, for the technicians' page ------------------------------------

    def _reject_dict(self, row: sqlite3.Row) -> dict:
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

    _REJECT_SELECT = (
        "SELECT r.*, j.state AS job_state, e.text AS text,"
        " (SELECT f.label FROM feedback f WHERE f.result_id = r.id ORDER BY f.id DESC LIMIT 1)"
        " AS feedback FROM results r"
        " LEFT JOIN jobs j ON j.result_id = r.id LEFT JOIN explanations e"
        " ON e.frame_id = r.frame_id WHERE r.verdict='fail'"
    )

    def rejects(
        self,
        since: datetime | str | None = None,
        product: str | None = None,
        station: str | None = None,
        limit: int = 100,
    ) -> list[dict]:
        """Rejects, newest first, optionally since a time (ISO string or datetime); ``product``
        matches whole words of the product, any case."""
        sql, args = self._REJECT_SELECT, []
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
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._reject_dict(r) for r in rows]

    def reject(self, frame_id: str) -> dict | None:
        """One reject by frame id, else None."""
        with self._lock:
            row = self._db.execute(
                self._REJECT_SELECT + " AND r.frame_id = ? ORDER BY r.id DESC LIMIT 1",
                (frame_id,),
            ).fetchone()
        return self._reject_dict(row) if row else None

    def chat_history(self, frame_id: str) -> list[dict]:
        """The chat about one reject, oldest first: ``{role, text, ts}``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT role, text, ts FROM chat WHERE frame_id=? ORDER BY id", (frame_id,)
            ).fetchall()
        return [dict(r) for r in rows]

    def append_chat(self, frame_id: str, role: str, text: str) -> None:
        """Add one turn (``user`` or ``assistant``) to the chat about a reject."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO chat (frame_id, role, text, ts) VALUES (?,?,?,?)",
                (frame_id, role, text, utc_iso()),
            )

    # --- feedback: technicians' labels of rejects -----------------------------------------

    def add_feedback(
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
        inspected twice). Returns the stored feedback as ``feedback_history`` gives it.

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
        with self._tx() as db:
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

    def feedback_history(self, frame_id: str) -> list[dict]:
        """Every label given to one reject, oldest first:
        ``{frame_id, cell_id, label, note, user, channel, ts}``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT frame_id, cell_id, label, note, user, channel, ts FROM feedback"
                " WHERE frame_id=? ORDER BY id",
                (frame_id,),
            ).fetchall()
        return [dict(r) for r in rows]

    def labelled(self) -> list[dict]:
        """Frames for a feedback dataset, oldest first: each labelled reject with its newest
        label, and each kept passed frame (label ``pass``). Dicts as ``reject`` gives them,
        with ``label``, ``note`` and ``user``."""
        sql = (
            "SELECT r.*, NULL AS job_state, NULL AS text, f.label AS feedback, f.label AS label,"
            " f.note AS note, f.user AS user FROM results r JOIN feedback f ON f.result_id = r.id"
            " WHERE f.id = (SELECT MAX(id) FROM feedback WHERE result_id = r.id)"
            " UNION ALL SELECT r.*, NULL, NULL, NULL, 'pass', '', '' FROM results r"
            " WHERE r.verdict = 'pass' AND r.image_path IS NOT NULL ORDER BY id"
        )
        with self._lock:
            rows = self._db.execute(sql).fetchall()
        return [
            self._reject_dict(r) | {"label": r["label"], "note": r["note"], "user": r["user"]}
            for r in rows
        ]

    # --- retention -----------------------------------------------------------------------

    def disk_bytes(self) -> int:
        """Bytes used by the database's live pages and the saved reject pictures."""
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            page = self._db.execute("PRAGMA page_size").fetchone()[0]
            files = self._db.execute("SELECT COALESCE(SUM(file_bytes),0) FROM results").fetchone()
        return int((pages - free) * page + files[0])

    def free_bytes(self) -> int:
        """Free space on the data directory's file system."""
        return shutil.disk_usage(self.data_dir).free

    _DELETABLE = (
        "published_at IS NOT NULL AND NOT EXISTS"
        " (SELECT 1 FROM jobs j WHERE j.result_id = results.id AND j.state != 'done')"
        " AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.result_id = results.id)"
        " AND NOT EXISTS (SELECT 1 FROM explanations e"
        " WHERE e.frame_id = results.frame_id AND e.published_at IS NULL)"
    )

    def _delete(self, rows: list[sqlite3.Row]) -> int:
        ids = [r["id"] for r in rows]
        for r in rows:
            for p in (r["image_path"], r["map_path"]):
                if p:
                    Path(p).unlink(missing_ok=True)
        with self._tx() as db:
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
        return len(ids)

    def apply_retention(self, max_age_s: float, max_bytes: int) -> int:
        """Delete old results, then the oldest (pictures first) until under ``max_bytes``.

        A result is old when both the wall clock and the station clock (``station_seconds``)
        say it is older than ``max_age_s``: a wall clock that jumps (set to 2000 at boot, then
        corrected by NTP) deletes nothing early. Never deletes a result that is not yet
        published or a reject whose explanation job is not done. Logs what it deletes.
        Returns the number of results deleted.
        """
        deleted = 0
        cutoff = time.time() - max_age_s
        station_cutoff = self.station_seconds() - max_age_s
        with self._lock:
            old = self._db.execute(
                f"SELECT id, frame_id, image_path, map_path, created FROM results"
                f" WHERE created < ? AND COALESCE(station_s, 0) < ? AND {self._DELETABLE}"
                f" ORDER BY id",
                (cutoff, station_cutoff),
            ).fetchall()
        if old:
            deleted += self._delete(old)
            _log_deleted(old, f"older than {max_age_s / 86400:g} days (retention.max_age_days)")
        excess = self.disk_bytes() - max_bytes
        while excess > 0:
            with self._lock:
                candidates = self._db.execute(
                    f"SELECT id, frame_id, image_path, map_path, created,"
                    f" file_bytes + LENGTH(payload) AS size FROM results WHERE {self._DELETABLE}"
                    f" ORDER BY (file_bytes > 0) DESC, id LIMIT 500"
                ).fetchall()
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
            deleted += self._delete(batch)
            _log_deleted(batch, f"to stay under {max_bytes / 1e9:g} GB (retention.max_disk_gb)")
            excess = self.disk_bytes() - max_bytes
        self.save_clock()
        if deleted:
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted


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
