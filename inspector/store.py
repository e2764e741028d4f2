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
import queue
import re
import shutil
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

log = logging.getLogger("inspector.store")

DB_FILE = "inspector.db"
REJECTS_DIR = "rejects"
JOB_LEASE_S = 600.0

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
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs(state, id);
CREATE TABLE IF NOT EXISTS explanations (
    frame_id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    backend TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chat (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    frame_id TEXT NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    ts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_frame ON chat(frame_id, id);
"""


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


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
        self._files: queue.Queue | None = None
        self._files_thread: threading.Thread | None = None

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
    ) -> int:
        """Store one result before it is published; a reject also saves its pictures and job.

        Args:
            result: the MQTT result payload (``frame_id``, ``cell_id``, ``verdict``, ...).
            image: the frame, saved losslessly for rejects (ignored otherwise).
            amap: the anomaly map at frame resolution, saved for rejects as float32 ``.npy``.
            defer_files: return once the row is committed and let a background writer save
                the reject's pictures (a 5 MP PNG takes ~0.1 s); its job becomes claimable
                only when they are on disk. ``flush_files()`` waits for the writer.

        Returns:
            The row id, which ``mark_published_many`` takes once the broker has it.
        """
        reject = result.get("verdict") == "fail"
        image_path = map_path = None
        if reject:
            day = datetime.now(UTC).strftime("%Y-%m-%d")
            folder = self.rejects_dir / day
            folder.mkdir(parents=True, exist_ok=True)
            stem = _safe_name(str(result["frame_id"]))
            image_path = folder / f"{stem}.png" if image is not None else None
            map_path = folder / f"{stem}_map.npy" if amap is not None else None
        write_later = defer_files and (image_path or map_path)
        file_bytes = 0 if write_later else _write_files(image_path, image, map_path, amap)
        now = time.time()
        payload = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO results (frame_id, cell_id, product, station, verdict, ts, created,"
                " payload, image_path, map_path, file_bytes) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    str(result["frame_id"]),
                    str(result.get("cell_id", "")),
                    result.get("product"),
                    result.get("station"),
                    str(result["verdict"]),
                    str(result.get("ts") or _now_iso()),
                    now,
                    payload,
                    str(image_path) if image_path else None,
                    str(map_path) if map_path else None,
                    file_bytes,
                ),
            )
            row_id = int(cur.lastrowid)
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

    def stored_for_file(self, ts: str, path: str) -> dict | None:
        """The stored result of the file ``path`` with this time stamp, else None.

        A source that keeps its file until the result is stored (the hot folder) hands the
        file out again when a crash fell between the two; this finds the verdict it already got.
        Not by cell id: a file name without one gets a new id each time it is handed out.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT payload FROM results WHERE ts=? ORDER BY id", (ts,)
            ).fetchall()
        for row in rows:
            payload = json.loads(row["payload"])
            if (payload.get("source") or {}).get("path") == path:
                return payload
        return None

    # --- explanation jobs ----------------------------------------------------------------

    def pending_jobs(self) -> int:
        """Rejects still waiting for an explanation."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state != 'done'").fetchone()[0]

    def claim_job(self, lease_s: float = JOB_LEASE_S) -> Job | None:
        """The oldest job that is due, leased to the caller; None when there is none.

        A job whose worker died (lease expired without ``finish_job``/``fail_job``) is
        claimable again.
        """
        now = time.time()
        with self._tx() as db:
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
                "UPDATE jobs SET state='claimed', lease_until=?, attempts=attempts+1 WHERE id=?",
                (now + lease_s, row["id"]),
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
        """Store the explanation of a claimed job and close the job."""
        with self._tx() as db:
            row = db.execute("SELECT frame_id FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(f"no explanation job {job_id}")
            db.execute(
                "INSERT OR REPLACE INTO explanations (frame_id, text, backend, created)"
                " VALUES (?,?,?,?)",
                (row["frame_id"], text, backend, time.time()),
            )
            db.execute(
                "UPDATE jobs SET state='done', lease_until=NULL, error=NULL WHERE id=?",
                (job_id,),
            )

    def fail_job(self, job_id: int, error: str, retry_in_s: float) -> None:
        """Give a claimed job back; it is due again after ``retry_in_s`` seconds."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state='queued', lease_until=NULL, error=?, not_before=?"
                " WHERE id=?",
                (error, time.time() + retry_in_s, job_id),
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
        }

    _REJECT_SELECT = (
        "SELECT r.*, j.state AS job_state, e.text AS text FROM results r"
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
                (frame_id, role, text, _now_iso()),
            )

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
                db.execute(f"DELETE FROM results WHERE id IN ({marks})", chunk)
                for f in frames:
                    db.execute("DELETE FROM explanations WHERE frame_id=?", (f,))
                    db.execute("DELETE FROM chat WHERE frame_id=?", (f,))
        return len(ids)

    def apply_retention(self, max_age_s: float, max_bytes: int) -> int:
        """Delete old results, then the oldest (pictures first) until under ``max_bytes``.

        Never deletes a result that is not yet published or a reject whose explanation job is
        not done. Returns the number of results deleted.
        """
        deleted = 0
        cutoff = time.time() - max_age_s
        with self._lock:
            old = self._db.execute(
                f"SELECT id, frame_id, image_path, map_path FROM results WHERE created < ?"
                f" AND {self._DELETABLE} ORDER BY id",
                (cutoff,),
            ).fetchall()
        deleted += self._delete(old)
        excess = self.disk_bytes() - max_bytes
        while excess > 0:
            with self._lock:
                candidates = self._db.execute(
                    f"SELECT id, frame_id, image_path, map_path, file_bytes + LENGTH(payload)"
                    f" AS size FROM results WHERE {self._DELETABLE}"
                    f" ORDER BY (file_bytes > 0) DESC, id LIMIT 500"
                ).fetchall()
            batch, freed = [], 0
            for row in candidates:
                batch.append(row)
                freed += row["size"]
                if freed >= excess:
                    break
            if not batch:
                break
            deleted += self._delete(batch)
            excess = self.disk_bytes() - max_bytes
        if deleted:
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted
