"""The pictures a result keeps: a reject's frame (lossless PNG) and anomaly map (``.npy``
float32, frame size), and the frames of the sample of passed cells kept for feedback datasets.

Files live under the data directory in one folder per UTC day: ``rejects/<day>/`` and
``passed/<day>/``. A reject's job waits in state ``saving`` while a background writer saves
its pictures (a 5 MP PNG takes ~0.1 s), so the daemon returns as soon as the row is committed.

Example:
    >>> pictures = Pictures(conn, data_dir)                              # doctest: +SKIP
    >>> paths = pictures.paths_for("f1", "fail", image, amap, False)     # doctest: +SKIP
    >>> pictures.save_later(row_id, job_id, paths[0], image, paths[1], amap)  # doctest: +SKIP
    >>> pictures.flush()  # every queued picture is on disk              # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from inspector.store.connection import Connection

log = logging.getLogger("inspector.store.pictures")

REJECTS_DIR = "rejects"
PASSED_DIR = "passed"  # the kept sample of passed frames (feedback.keep_passed_every)


def write_pictures(
    image_path: Path | None, image: np.ndarray | None, map_path: Path | None, amap
) -> int:
    """Write a result's PNG and map (each when its path is given); returns the bytes written."""
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


class Pictures:
    """Where a result's pictures go, and the background writer that saves them.

    Args:
        conn: the store's connection (the writer records sizes and releases jobs).
        data_dir: the data directory.
    """

    def __init__(self, conn: Connection, data_dir: Path) -> None:
        self._conn = conn
        self.data_dir = Path(data_dir)
        self.rejects_dir = self.data_dir / REJECTS_DIR
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def paths_for(
        self,
        frame_id: str,
        verdict: str,
        image: np.ndarray | None,
        amap: np.ndarray | None,
        keep_image: bool,
    ) -> tuple[Path | None, Path | None]:
        """``(image path, map path)`` of a result, None where nothing is kept: a reject keeps
        its frame and map, a kept ``pass`` (``keep_image``) its frame only. Makes the folder."""
        reject = verdict == "fail"
        if not reject and not (keep_image and verdict == "pass" and image is not None):
            return None, None
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        folder = (self.rejects_dir if reject else self.data_dir / PASSED_DIR) / day
        folder.mkdir(parents=True, exist_ok=True)
        stem = _safe_name(frame_id)
        image_path = folder / f"{stem}.png" if image is not None else None
        map_path = folder / f"{stem}_map.npy" if reject and amap is not None else None
        return image_path, map_path

    def save_later(
        self,
        row_id: int,
        job_id: int | None,
        image_path: Path | None,
        image: np.ndarray | None,
        map_path: Path | None,
        amap: np.ndarray | None,
    ) -> None:
        """Queue the pictures of result ``row_id`` for the writer, which then records their
        size and makes job ``job_id`` (state ``saving``) claimable."""
        self._writer().put((row_id, job_id, image_path, image, map_path, amap))

    def _writer(self) -> queue.Queue:
        if self._queue is None:
            # bounded: rejects faster than the disk hold the pipeline back instead of memory
            self._queue = queue.Queue(maxsize=16)
            self._thread = threading.Thread(
                target=self._write_loop, name="reject-writer", daemon=True
            )
            self._thread.start()
        return self._queue

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                row_id, job_id, image_path, image, map_path, amap = item
                error = None
                try:
                    size = write_pictures(image_path, image, map_path, amap)
                except Exception as exc:  # disk full...: explain from the facts alone
                    log.exception("saving the pictures of result %s failed", row_id)
                    error, size = f"pictures not saved: {exc}", 0
                try:
                    self._saved(row_id, job_id, size, error)
                except Exception:  # disk full, locked: the job stays 'saving' until next start
                    log.exception("recording the pictures of result %s failed", row_id)
            finally:
                self._queue.task_done()

    def _saved(self, row_id: int, job_id: int | None, size: int, error: str | None) -> None:
        with self._conn.tx() as db:
            if error:
                db.execute(
                    "UPDATE results SET image_path=NULL, map_path=NULL WHERE id=?", (row_id,)
                )
            db.execute("UPDATE results SET file_bytes=? WHERE id=?", (size, row_id))
            db.execute(
                "UPDATE jobs SET state='queued', error=? WHERE id=? AND state='saving'",
                (error, job_id),
            )

    def flush(self) -> None:
        """Wait until every queued picture is on disk and its job claimable."""
        if self._queue is not None:
            self._queue.join()

    def close(self) -> None:
        """Finish the queued pictures and end the writer."""
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None

    def recover_unsaved(self) -> int:
        """Jobs left 'saving' by a crash: queue them, forgetting pictures that never landed.

        Only the process that writes results (the daemon) calls this, at start: in any other
        process a 'saving' job may just be in the daemon's writer queue. Returns the count.
        """
        with self._conn.tx() as db:
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
