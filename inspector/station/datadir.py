"""The daemon's hold on its data directory: one daemon at a time, writable, a sound database.

``claim(data_dir)`` runs first in ``inspector run``, before the model is loaded, so that a
mistake costs a second and says what is wrong in one line (exit status 2), like a bad config:

- an exclusive lock (``inspector.lock``, ``flock``): a second daemon on the same data
  directory would store every file twice under different frame ids and fight the first one
  for the MQTT client id;
- the directory must be writable (a test file is created and removed);
- ``PRAGMA quick_check`` on ``inspector.db``: a damaged database (overwritten pages, a
  truncated file, a file that is not a database) is moved aside as
  ``inspector.db.damaged-<UTC time>`` with its ``-wal``/``-shm`` files, and the daemon starts
  on a fresh one (into which it salvages the unpublished results it can still read) and
  raises the ``store_damaged`` alarm. Nothing is deleted.

The explainer and the web page open the same directory without the lock: they only read
results and never create the database.

Example:
    >>> held = claim(Path("/var/lib/inspector"))    # doctest: +SKIP
    >>> held.damaged                                 # None, or what was wrong and where it went
    >>> held.release()                               # at exit (the OS also drops the lock)
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from inspector.store.db import DB_FILE

LOCK_FILE = "inspector.lock"


class DataDirError(Exception):
    """The data directory cannot be used; the message says why in one line."""


@dataclass
class Damaged:
    """A database found damaged at start and moved aside."""

    problem: str
    moved_to: Path
    salvaged: int = 0  # unpublished results copied into the fresh database


@dataclass
class DataDir:
    """A claimed data directory: the lock is held until ``release()`` (or process exit)."""

    path: Path
    lock: IO[str] | None
    damaged: Damaged | None = None

    def release(self) -> None:
        """Drop the lock; safe to call twice."""
        lock, self.lock = self.lock, None
        if lock is not None:
            lock.close()


def claim(data_dir: Path) -> DataDir:
    """Create ``data_dir`` if needed, lock it, check it is writable and its database sound.

    Raises:
        DataDirError: another daemon holds the directory, it is not writable, or the
            database cannot be opened for a reason other than damage (permissions).
    """
    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        _check_writable(data_dir)
    except OSError as exc:
        raise DataDirError(f"data_dir {data_dir} is not writable: {exc.strerror}") from None
    held = DataDir(data_dir, _lock(data_dir))
    try:
        held.damaged = _set_aside_if_damaged(data_dir / DB_FILE)
    except BaseException:
        held.release()
        raise
    return held


def _check_writable(data_dir: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-test-"):
        pass


def _lock(data_dir: Path) -> IO[str]:
    path = data_dir / LOCK_FILE
    try:
        handle = path.open("a+", encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror
        raise DataDirError(f"data_dir {data_dir}: cannot open {LOCK_FILE}: {reason}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DataDirError(
            f"data_dir {data_dir} is in use by another inspector run (pid {holder});"
            " only one daemon may use a data directory"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def database_problem(path: Path) -> str | None:
    """What ``PRAGMA quick_check`` finds wrong with the SQLite file ``path`` (None: sound).

    Raises:
        DataDirError: the file cannot be opened or read at all (permissions, locked).
    """
    try:
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise DataDirError(f"database {path} cannot be opened: {exc}") from None
    try:
        rows = [r[0] for r in db.execute("PRAGMA quick_check(5)").fetchall()]
    except sqlite3.OperationalError as exc:  # locked, read-only, I/O: not damage
        raise DataDirError(f"database {path} cannot be read: {exc}") from None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
        return str(exc)
    finally:
        db.close()
    lines = [line.strip() for row in rows for line in row.splitlines() if line.strip()]
    return None if lines == ["ok"] else "; ".join(lines)


def _set_aside_if_damaged(path: Path) -> Damaged | None:
    if not path.exists():
        return None
    problem = database_problem(path)
    if problem is None:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    try:
        for suffix in ("", "-wal", "-shm", "-journal"):
            part = path.with_name(path.name + suffix)
            if part.exists():
                part.rename(aside.with_name(aside.name + suffix))
    except OSError as exc:
        raise DataDirError(
            f"database {path} is damaged ({problem}) and could not be moved aside: {exc.strerror}"
        ) from None
    return Damaged(problem, aside)
