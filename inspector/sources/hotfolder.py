"""A scanner's hot folder: image files are taken once completely written, then filed away.

The scanner software writes one image file per cell into a folder. Watchdog reports each
change; a file is taken when the writer has closed it (inotify close-write), renamed it into
place, or left it unchanged (size and mtime) for ``settle_s``, and only if it decodes as an
image: a half-written file does not, so it waits. A file that stays unreadable and unchanged
for ``corrupt_after_s`` is corrupt and comes out as an error frame. After the daemon has its
verdict it calls ``ack(frame, ok)``, which moves the file to ``done/`` (or ``failed/`` for
an error verdict). Files already there at start are processed too, so nothing is lost over
a restart: a file leaves the folder only once its result is stored.

Example:
    >>> cfg = HotFolderSourceConfig(folder=Path("/scans"), cell_id_pattern=r"^(?P<cell_id>\\w+)_")
    >>> source = HotFolderSource(cfg)  # then open(), frames(), ack() per frame, close()
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from inspector.sources.base import Frame, Source, SourceError, new_cell_id
from inspector.sources.config import HotFolderSourceConfig

log = logging.getLogger(__name__)


class _StopIsNoError(logging.Filter):
    """watchdog 7's inotify emitter runs its loop once more after ``stop()`` and logs "called
    when the thread is inactive" at ERROR on every clean stop; that line is demoted to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "called when the thread is inactive" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


logging.getLogger("watchdog.observers.inotify").addFilter(_StopIsNoError())

#: States a file passes through; ``on_event`` receives them with the file's path.
WAITING, INCOMPLETE, TAKEN, CORRUPT, DONE, FAILED = (
    "waiting",
    "incomplete",
    "taken",
    "corrupt",
    "done",
    "failed",
)

_CHANGED, _COMPLETE, _GONE, _STOP = "changed", "complete", "gone", "stop"


@dataclass
class _Pending:
    """What the source knows about a file it has not taken yet."""

    due: float
    sig: tuple[int, int] | None = None
    complete_hint: bool = False
    bad_sig: tuple[int, int] | None = None
    bad_since: float = 0.0
    why: str = ""


class _Handler(FileSystemEventHandler):
    """Turns watchdog events for files into queue messages for ``frames()``."""

    def __init__(self, put: Callable[[tuple[str, Path]], None]) -> None:
        self._put = put

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        kind = event.event_type
        src = Path(event.src_path)
        if kind == "moved":
            self._put((_GONE, src))
            self._put((_COMPLETE, Path(event.dest_path)))
        elif kind == "deleted":
            self._put((_GONE, src))
        elif kind == "closed":
            self._put((_COMPLETE, src))
        elif kind in ("created", "modified"):
            self._put((_CHANGED, src))


class HotFolderSource(Source):
    """Frames from the image files a scanner writes into ``cfg.folder``.

    ``on_event(state, path)``, if given, hears each step a file takes (``waiting``,
    ``incomplete``, ``taken``, ``corrupt``, ``done``, ``failed``): for logs, metrics and tests.
    """

    name = "hotfolder"

    def __init__(
        self,
        cfg: HotFolderSourceConfig,
        on_event: Callable[[str, Path], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self._folder = Path(cfg.folder).absolute()
        self._pattern = re.compile(cfg.cell_id_pattern) if cfg.cell_id_pattern else None
        self.on_event = on_event
        self._messages: queue.Queue[tuple[str, Path]] = queue.Queue()
        self._observer = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: set[Path] = set()

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Start watching; queue the files already in the folder. Raises SourceError if absent."""
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        if not self._folder.is_dir():
            raise SourceError(f"hot folder {self._folder} does not exist")
        self.cfg.done_path.mkdir(parents=True, exist_ok=True)
        self.cfg.failed_path.mkdir(parents=True, exist_ok=True)
        self.close()
        self._closed.clear()
        self._messages = queue.Queue()
        # Files handed out before a reopen keep their place in _in_flight: the daemon still
        # acks them, and they must not be taken a second time meanwhile.
        observer = PollingObserver(timeout=self.cfg.settle_s) if self.cfg.polling else Observer()
        observer.schedule(_Handler(self._messages.put), str(self._folder))
        observer.daemon = True
        observer.start()
        self._observer = observer
        # Listed after the observer started, so a file written in between is seen either way.
        for path in sorted(self._folder.iterdir()):
            self._messages.put((_CHANGED, path))

    def close(self) -> None:
        """Stop watching and make ``frames()`` return. Safe to call twice."""
        self._closed.set()
        self._messages.put((_STOP, self._folder))
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    # -- frames -----------------------------------------------------------------------------

    def frames(self) -> Iterator[Frame]:
        """Yield one frame per complete image file, oldest first, until ``close()``."""
        pending: dict[Path, _Pending] = {}
        while not self._closed.is_set():
            if not self._folder.is_dir():
                raise SourceError(f"hot folder {self._folder} disappeared")
            now = time.monotonic()
            wait = min([p.due for p in pending.values()] + [now + 1.0]) - now
            try:
                message = self._messages.get(timeout=max(wait, 0.0))
            except queue.Empty:
                message = None
            while message is not None:
                self._note(pending, *message)
                try:
                    message = self._messages.get_nowait()
                except queue.Empty:
                    message = None
            if self._closed.is_set():
                return
            now = time.monotonic()
            for path in sorted(p for p, entry in pending.items() if entry.due <= now):
                frame = self._check(path, pending[path], now)
                if frame is None:
                    continue
                del pending[path]
                with self._lock:
                    self._in_flight.add(path)
                self._emit(CORRUPT if frame.error else TAKEN, path)
                yield frame
                if self._closed.is_set():
                    return

    def ack(self, frame: Frame, ok: bool) -> None:
        """Move the frame's file to ``done/`` (ok) or ``failed/`` (an error verdict)."""
        path = Path(frame.meta.get("path", ""))
        with self._lock:
            if path not in self._in_flight:
                return
        target_dir = self.cfg.done_path if ok else self.cfg.failed_path
        target = _free_name(target_dir / path.name)
        try:
            shutil.move(path, target)
        except OSError as exc:
            log.error("could not move %s to %s: %s", path, target_dir, exc)
            return
        with self._lock:
            self._in_flight.discard(path)
        self._emit(DONE if ok else FAILED, target)

    # -- internals --------------------------------------------------------------------------

    def _wanted(self, path: Path) -> bool:
        return path.parent == self._folder and path.suffix.lower() in self.cfg.suffixes

    def _note(self, pending: dict[Path, _Pending], what: str, path: Path) -> None:
        path = path.absolute()
        if what == _STOP:
            return
        if what == _GONE:
            pending.pop(path, None)
            return
        if not self._wanted(path):
            return
        with self._lock:
            if path in self._in_flight:
                return
        now = time.monotonic()
        entry = pending.setdefault(path, _Pending(due=now))
        if what == _COMPLETE:
            entry.complete_hint = True
            entry.due = now
        else:
            entry.complete_hint = False
            entry.due = now + (self.cfg.settle_s if entry.sig is not None else 0.0)

    def _check(self, path: Path, entry: _Pending, now: float) -> Frame | None:
        """A frame if ``path`` is complete (or given up as corrupt); None to look again later."""
        sig = _signature(path)
        if sig is None:
            entry.due = float("inf")
            return None
        if not entry.complete_hint and sig != entry.sig:
            entry.sig = sig
            entry.due = now + self.cfg.settle_s
            self._emit(WAITING, path)
            return None
        entry.sig = sig
        entry.complete_hint = False
        if sig != entry.bad_sig:
            image, why = _decode(path)
            if image is not None and _signature(path) == sig:
                return self._frame(path, image, None)
            if image is not None:  # changed while it was read
                entry.due = now + self.cfg.settle_s
                return None
            entry.bad_sig, entry.bad_since = sig, now
            entry.why = why
            self._emit(INCOMPLETE, path)
        if now - entry.bad_since >= self.cfg.corrupt_after_s:
            return self._frame(path, None, f"{path.name}: {entry.why}")
        entry.due = min(now + self.cfg.settle_s, entry.bad_since + self.cfg.corrupt_after_s)
        return None

    def _frame(self, path: Path, image: np.ndarray | None, error: str | None) -> Frame:
        cell_id, product = None, None
        meta: dict[str, object] = {"source": self.name, "path": str(path), "file": path.name}
        if self._pattern is not None:
            match = self._pattern.search(path.name)
            if match is not None:
                cell_id = match.group("cell_id")
                if "product" in self._pattern.groupindex:
                    product = match.group("product")
            else:  # said, not silent: the line may be naming its files wrongly
                meta["cell_id_generated"] = True
                log.warning("%s does not match source.cell_id_pattern: cell id generated", path)
        try:
            stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except OSError:
            stamp = datetime.now(UTC)
        return Frame(
            cell_id=cell_id or new_cell_id(self.cfg.cell_id_prefix),
            image=image,
            timestamp=stamp,
            product=product,
            meta=meta,
            error=error,
        )

    def _emit(self, state: str, path: Path) -> None:
        log.debug("%s: %s", state, path)
        if self.on_event is not None:
            self.on_event(state, path)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _decode(path: Path) -> tuple[np.ndarray | None, str]:
    """The image in ``path`` as stored (bit depth kept, colour BGR), or None and why not."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    if data.size == 0:
        return None, "empty file"
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None, "not a readable image (corrupt or truncated)"
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image, ""


def _free_name(target: Path) -> Path:
    """``target``, or ``name-1.ext``, ``name-2.ext``... if a file of that name is there."""
    n = 0
    candidate = target
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.stem}-{n}{target.suffix}")
    return candidate
