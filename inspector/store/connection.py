"""The store's one SQLite connection (WAL): schema, migrations, transactions, checkpoints.

Several processes (daemon, explainer, web page) may open the same file: WAL lets readers run
beside the one writer, and writes wait up to 30 s for the lock. Every table object of the
store reads and writes through one ``Connection``, so one lock serialises a process's threads.

Example:
    >>> conn = Connection(data_dir / DB_FILE)                          # doctest: +SKIP
    >>> with conn.tx() as db:                                            # doctest: +SKIP
    ...     db.execute("INSERT INTO chat (frame_id, role, text, ts) VALUES (?,?,?,?)", row)
    >>> conn.rows("SELECT text FROM chat")                               # doctest: +SKIP
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# explanations are an outbox as results are: their id orders them and is never reused
_EXPLANATIONS = """
CREATE TABLE IF NOT EXISTS explanations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    frame_id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    backend TEXT NOT NULL,
    created REAL NOT NULL,
    published_at REAL
);
"""
_SCHEMA = (
    """
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
"""
    + _EXPLANATIONS
    + """
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
)
# columns added after the first release: (table, column, type, value for old rows)
_ADDED_COLUMNS = (
    ("results", "station_s", "REAL", None),
    ("jobs", "claimed_by", "TEXT", None),
    # explanations stored before the outbox were published at once: do not send them again
    ("explanations", "published_at", "REAL", "created"),
)


class Connection:
    """One SQLite connection, safe to share between the threads of one process.

    Args:
        path: the database file (created with the schema when missing).
        synchronous: SQLite's ``synchronous`` pragma. NORMAL in WAL mode survives a process
            crash; a power cut may lose the last commits but never corrupts the database.
            FULL also survives a power cut, at an fsync per commit.
        autocheckpoint: False when the owner calls ``checkpoint()`` off the write path.
    """

    def __init__(self, path: Path, synchronous: str = "NORMAL", autocheckpoint: bool = True):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        """Bring a database of an older release up to the current tables (in one write
        transaction, so two processes opening it at once do not both change a table)."""
        with self.tx() as db:
            for table, column, kind, old_value in _ADDED_COLUMNS:
                if column not in _columns(db, table):
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    if old_value is not None:
                        db.execute(f"UPDATE {table} SET {column} = {old_value}")
            if "id" not in _columns(db, "explanations"):
                _number_explanations(db)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed at the end, rolled back on
        an exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def rows(self, sql: str, args: tuple | list = ()) -> list[sqlite3.Row]:
        """Every row a query gives."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def row(self, sql: str, args: tuple | list = ()) -> sqlite3.Row | None:
        """The first row a query gives, else None."""
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def fold_wal(self) -> None:
        """Fold the WAL back into the database and truncate it (after deletions, at close)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def checkpoint(self) -> None:
        """Fold the WAL into the database from a separate connection (PASSIVE: writers on
        the main connection are not blocked, so no result waits for the fsync)."""
        db = sqlite3.connect(self.path, timeout=5.0)
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}


def _number_explanations(db: sqlite3.Connection) -> None:
    """Give the explanations of an older release their ids, in the order they were stored."""
    db.execute("ALTER TABLE explanations RENAME TO explanations_unnumbered")
    db.execute(_EXPLANATIONS)
    db.execute(
        "INSERT INTO explanations (frame_id, text, backend, created, published_at)"
        " SELECT frame_id, text, backend, created, published_at FROM explanations_unnumbered"
        " ORDER BY rowid"
    )
    db.execute("DROP TABLE explanations_unnumbered")
