"""The station's store: results, reject pictures, explanation jobs, explanations, chats and
feedback in one SQLite database (WAL) under the data directory.

The results and the explanations are the MQTT outbox (``inspector.comms.outbox``): each is
committed here before it is published and marked published when the broker acknowledges it,
so a crash or a broker outage loses nothing (a message may be published twice, with the same
``frame_id``). A reject also saves its frame (lossless PNG) and anomaly map (``.npy``
float32, frame size) and becomes an explanation job for the explainer process, which opens
the same database.

``Store`` owns one object per concept, each in its own module: ``results`` and
``explanations`` (the two outbox tables, which the outbox reads directly), jobs, rejects as
the page reads them, chat, feedback, pictures, retention, salvage and the station clock. The
daemon, the explainer and the page call the methods of ``Store`` below.

Example:
    >>> store = Store(Path(tempfile.mkdtemp()))                     # doctest: +SKIP
    >>> row = store.record({"frame_id": "f1", "cell_id": "c1", "verdict": "pass"}, None, None)
    >>> [r["payload"]["frame_id"] for r in store.results.unpublished()]  # doctest: +SKIP
    ['f1']
"""

from __future__ import annotations

import sqlite3
from contextlib import suppress
from datetime import datetime
from pathlib import Path

import numpy as np

from inspector.store.chat import Chat
from inspector.store.clock import StationClock
from inspector.store.connection import Connection
from inspector.store.explanations import Explanations
from inspector.store.feedback import Feedback
from inspector.store.jobs import JOB_LEASE_S, Job, Jobs
from inspector.store.pictures import REJECTS_DIR, Pictures, write_pictures
from inspector.store.rejects import Rejects
from inspector.store.results import Results, stored_result
from inspector.store.retention import Retention
from inspector.store.salvage import salvage_unpublished

DB_FILE = "inspector.db"


class Store:
    """The station's store; safe to share between threads of one process, and opened by
    several processes at once (daemon, explainer, web page).

    Args:
        data_dir: the data directory (made when missing).
        synchronous: SQLite's ``synchronous`` pragma (``NORMAL`` or ``FULL``).
        autocheckpoint: False when the owner calls ``checkpoint()`` off the write path.
    """

    def __init__(
        self, data_dir: Path, synchronous: str = "NORMAL", autocheckpoint: bool = True
    ) -> None:
        self.data_dir = Path(data_dir)
        self.rejects_dir = self.data_dir / REJECTS_DIR
        self.rejects_dir.mkdir(parents=True, exist_ok=True)  # and the data directory
        self.path = self.data_dir / DB_FILE
        self._conn = Connection(self.path, synchronous, autocheckpoint)
        self._pictures = Pictures(self._conn, self.data_dir)
        self._clock = StationClock(self._conn)
        self.results = Results(self._conn)
        self.explanations = Explanations(self._conn)
        self._jobs = Jobs(self._conn, self.explanations)
        self._rejects = Rejects(self._conn)
        self._chat = Chat(self._conn)
        self._feedback = Feedback(self._conn)
        self._retention = Retention(self._conn, self._clock, self.data_dir)

    def close(self) -> None:
        """Finish deferred pictures, close the database (the WAL is folded back)."""
        self._pictures.close()
        with suppress(sqlite3.Error):
            if self._clock.owner:
                self._clock.save()
            self._conn.fold_wal()
        self._conn.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the database without blocking writers (see ``Connection``)."""
        self._conn.checkpoint()

    # --- results -------------------------------------------------------------------------

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
            The row id, which ``results.mark_published`` takes once the broker has it.
        """
        typed = stored_result(result)
        reject = typed.verdict == "fail"
        paths = self._pictures.paths_for(typed.frame_id, typed.verdict, image, amap, keep_image)
        write_later = defer_files and any(paths)
        file_bytes = 0 if write_later else write_pictures(paths[0], image, paths[1], amap)
        self._clock.owner = True
        with self._conn.tx() as db:
            row_id = self.results.add(
                db, result, paths, file_bytes, self._clock.seconds(), source_file
            )
            job_id = None
            if reject:
                state = "saving" if write_later else "queued"
                job_id = self._jobs.add(db, row_id, typed.frame_id, state)
        if write_later:
            self._pictures.save_later(row_id, job_id, paths[0], image, paths[1], amap)
        return row_id

    def flush_files(self) -> None:
        """Wait until every deferred reject picture is on disk and its job claimable."""
        self._pictures.flush()

    def recover_unsaved(self) -> int:
        """Jobs left 'saving' by a crash: queued, without the pictures that never landed (the
        daemon, at start). Returns the count."""
        return self._pictures.recover_unsaved()

    def salvage_unpublished(self, damaged: Path, chunk: int = 200) -> int:
        """Copy the unpublished results a damaged database still holds into this store (see
        ``inspector.store.salvage``). Returns the number of results salvaged."""
        return salvage_unpublished(self._conn, self._clock, damaged, chunk)

    def backlog(self) -> int:
        """How many results wait for the broker."""
        return self.results.backlog()

    def result_for_file(self, path: str, sha256: str) -> tuple[int, dict, bool] | None:
        """``(row id, payload, filed)`` of the newest result for this source file and content
        (see ``Results.for_file``)."""
        return self.results.for_file(path, sha256)

    def mark_filed(self, row_id: int) -> None:
        """The source file of result ``row_id`` has been filed away (done/ or failed/)."""
        self.results.mark_filed(row_id)

    # --- explanation jobs and explanations -------------------------------------------------

    def pending_jobs(self) -> int:
        """Rejects still waiting for an explanation."""
        return self._jobs.pending()

    def claim_job(self, lease_s: float = JOB_LEASE_S) -> Job | None:
        """The oldest job that is due, leased to the caller; None when there is none.

        A job whose worker died is claimable again: at once when that worker was a process
        of this host that has ended (a killed explainer), else when its lease expired.
        """
        return self._jobs.claim(lease_s)

    def finish_job(self, job_id: int, text: str, backend: str) -> None:
        """Store the explanation of a claimed job (unpublished) and close the job."""
        self._jobs.finish(job_id, text, backend)

    def fail_job(self, job_id: int, error: str, retry_in_s: float) -> None:
        """Give a claimed job back; it is due again after ``retry_in_s`` seconds."""
        self._jobs.fail(job_id, error, retry_in_s)

    def explanation(self, frame_id: str) -> dict | None:
        """``{frame_id, text, backend, ts}`` of an explained reject, else None."""
        return self.explanations.get(frame_id)

    # --- rejects, chat and feedback, for the technicians' page -----------------------------

    def rejects(
        self,
        since: datetime | str | None = None,
        product: str | None = None,
        station: str | None = None,
        limit: int = 100,
    ) -> list[dict]:
        """Rejects, newest first, optionally since a time (ISO string or datetime); ``product``
        matches whole words of the product, any case."""
        return self._rejects.newest(since, product, station, limit)

    def reject(self, frame_id: str) -> dict | None:
        """One reject by frame id, else None."""
        return self._rejects.get(frame_id)

    def chat_history(self, frame_id: str) -> list[dict]:
        """The chat about one reject, oldest first: ``{role, text, ts}``."""
        return self._chat.history(frame_id)

    def append_chat(self, frame_id: str, role: str, text: str) -> None:
        """Add one turn (``user`` or ``assistant``) to the chat about a reject."""
        self._chat.append(frame_id, role, text)

    def add_feedback(
        self,
        label: str,
        user: str,
        channel: str,
        note: str = "",
        frame_id: str | None = None,
        cell_id: str | None = None,
    ) -> dict:
        """Label a reject ``confirmed`` or ``false_reject`` (by ``frame_id``, else the newest
        reject of ``cell_id``); see ``Feedback.add``."""
        return self._feedback.add(label, user, channel, note, frame_id, cell_id)

    def feedback_history(self, frame_id: str) -> list[dict]:
        """Every label given to one reject, oldest first."""
        return self._feedback.history(frame_id)

    def labelled(self) -> list[dict]:
        """Frames for a feedback dataset, oldest first (see ``Feedback.labelled``)."""
        return self._feedback.labelled()

    # --- retention -----------------------------------------------------------------------

    def disk_bytes(self) -> int:
        """Bytes used by the database's live pages and the saved reject pictures."""
        return self._retention.disk_bytes()

    def free_bytes(self) -> int:
        """Free space on the data directory's file system."""
        return self._retention.free_bytes()

    def apply_retention(self, max_age_s: float, max_bytes: int) -> int:
        """Delete old results, then the oldest (pictures first) until under ``max_bytes``.

        A result is old when both the wall clock and the station clock say it is older than
        ``max_age_s``. Never deletes a result that is not yet published or a reject whose
        explanation is not done or not published. Returns the number of results deleted.
        """
        return self._retention.apply(max_age_s, max_bytes)
