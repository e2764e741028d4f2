"""Explanation jobs: one per reject, claimed by the explainer oldest first, leased, retried.

A job is ``saving`` while its pictures are written, ``queued`` when claimable, ``claimed``
while an explainer works on it (under a lease, tagged with that process) and ``done`` once its
explanation is stored. A job whose explainer died is claimable again: at once when that was a
process of this host that has ended, else when its lease expires.

Example:
    >>> job = jobs.claim()                                            # doctest: +SKIP
    >>> jobs.finish(job.id, "One bubble, upper left.", "template")    # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from inspector.store.connection import Connection
from inspector.store.explanations import Explanations

log = logging.getLogger("inspector.store.jobs")

JOB_LEASE_S = 600.0


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


class Jobs:
    """The ``jobs`` table; a finished job stores its explanation in ``explanations``."""

    def __init__(self, conn: Connection, explanations: Explanations) -> None:
        self._conn = conn
        self._explanations = explanations

    @staticmethod
    def add(db: sqlite3.Connection, result_id: int, frame_id: str, state: str = "queued") -> int:
        """Queue a job for the reject ``result_id`` inside the caller's transaction ``db``
        (state ``saving`` while its pictures are still being written)."""
        return db.execute(
            "INSERT INTO jobs (result_id, frame_id, state, created) VALUES (?,?,?,?)",
            (result_id, frame_id, state, time.time()),
        ).lastrowid

    def pending(self) -> int:
        """Rejects still waiting for an explanation."""
        return self._conn.row("SELECT COUNT(*) FROM jobs WHERE state != 'done'")[0]

    def claim(self, lease_s: float = JOB_LEASE_S) -> Job | None:
        """The oldest job that is due, leased to the caller; None when there is none."""
        now = time.time()
        me = process_tag()
        with self._conn.tx() as db:
            _release_orphans(db, me)
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

    def finish(self, job_id: int, text: str, backend: str) -> None:
        """Store the explanation of a claimed job (unpublished) and close the job."""
        with self._conn.tx() as db:
            row = db.execute("SELECT frame_id FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(f"no explanation job {job_id}")
            self._explanations.add(db, row["frame_id"], text, backend)
            db.execute(
                "UPDATE jobs SET state='done', lease_until=NULL, error=NULL, claimed_by=NULL"
                " WHERE id=?",
                (job_id,),
            )

    def fail(self, job_id: int, error: str, retry_in_s: float) -> None:
        """Give a claimed job back; it is due again after ``retry_in_s`` seconds."""
        with self._conn.tx() as db:
            db.execute(
                "UPDATE jobs SET state='queued', lease_until=NULL, error=?, not_before=?,"
                " claimed_by=NULL WHERE id=?",
                (error, time.time() + retry_in_s, job_id),
            )


def _release_orphans(db: sqlite3.Connection, me: str) -> None:
    """Queue again the claimed jobs of explainers of this host that have ended."""
    claimed = db.execute("SELECT id, frame_id, claimed_by FROM jobs WHERE state='claimed'")
    for job in claimed.fetchall():
        if job["claimed_by"] != me and process_gone(job["claimed_by"]):
            log.warning(
                "job %s (%s) was claimed by %s, which has ended: claimable again",
                job["id"],
                job["frame_id"],
                job["claimed_by"],
            )
            db.execute(
                "UPDATE jobs SET state='queued', lease_until=NULL, claimed_by=NULL WHERE id=?",
                (job["id"],),
            )
