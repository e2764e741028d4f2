"""A scanner's hot folder: image files are taken once completely written, then filed away.

The scanner software writes one image file per cell into a folder. Watchdog reports each
change; a file is taken when the writer has closed it (inotify close-write), renamed it into
place, or left it unchanged (size and mtime) for ``settle_s``, and only if it decodes as an
image: a half-written file does not, so it waits. A file that stays unreadable and unchanged
for ``corrupt_after_s`` is corrupt and comes out as an error frame. After the daemon has its
verdict it calls ``ack(frame, ok)``, which moves the file to ``done/`` (or ``failed/`` for
an error verdict). Files already there at start are processed too, so nothing is lost over
a restart: a file leaves the folder only once its result is stored.

Only regular files up to ``max_file_mb`` are read, without following links and without
blocking on a pipe or device node (those are skipped with a log line). A file replaced while
it was inspected (the same name scanned again) is inspected again, not filed away unseen; a
file that cannot be filed away does not block its name. Each frame carries the SHA-256 of the
file's bytes, so the daemon can tell a file left over by a crash (same content, never filed)
from one queued again on purpose. A hot folder that is moved away or made anew raises
``SourceError``: the daemon alarms and watches the new one.

Example:
    >>> cfg = HotFolderSourceConfig(folder=Path("/scans"), cell_id_pattern=r"^(?P<cell_id>\\w+)_")
    >>> source = HotFolderSource(cfg)  # then open(), frames(), ack() per frame, close()
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from inspector.sources.base import (
    CELL_ID,
    PRODUCT,
    Frame,
    Source,
    SourceError,
    SourceSection,
    cell_id_prefix_field,
    new_cell_id,
    safe_text,
)
from models.image_io import IMAGE_SUFFIXES, ImageError, decode_image

log = logging.getLogger(__name__)

KIND = "hotfolder"


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
NAME_MAX = 255  # bytes in one file name on Linux file systems

#: What tells one file from another under the same name: device, inode, size, mtime.
Identity = tuple[int, int, int, int]


class HotFolderSourceConfig(SourceSection):
    """A folder an ultrasound scanner writes image files into.

    ``cell_id_pattern`` is a regular expression searched in the file name with a named group
    ``cell_id`` (and optionally ``product``); a name it does not match gets a new unique id,
    an id that is not a valid cell id (see ``docs/mqtt.md``) gets an ``error`` result.
    Only regular files are taken (no links, pipes or devices), up to ``max_file_mb``.
    Processed files go to ``done_dir`` / ``failed_dir`` (default ``done/`` and ``failed/``
    inside the watched folder, which is watched without its subfolders).
    """

    kind: Literal[KIND] = KIND
    folder: Path = Field(description="The folder the scanner writes into.")
    cell_id_pattern: str | None = Field(
        default=None, description="Regular expression with a `(?P<cell_id>...)` group."
    )
    suffixes: list[str] = Field(
        default_factory=lambda: sorted(IMAGE_SUFFIXES), description="File types taken."
    )
    done_dir: Path | None = Field(default=None, description="Where inspected files go.")
    failed_dir: Path | None = Field(
        default=None, description="Where unreadable files and error frames go."
    )
    settle_s: float = Field(
        default=0.5, gt=0, description="a file is complete when unchanged this long"
    )
    corrupt_after_s: float = Field(
        default=10.0, gt=0, description="an unreadable file unchanged this long is corrupt"
    )
    polling: bool = Field(default=False, description="poll instead of OS events (network shares)")
    max_file_mb: float = Field(
        default=512.0,
        gt=0,
        description="A larger file is not read: it gets an error result and goes to failed/.",
    )
    cell_id_prefix: str = cell_id_prefix_field()

    @field_validator("cell_id_pattern")
    @classmethod
    def _pattern_has_cell_id(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "cell_id" not in compiled.groupindex:
            raise ValueError("needs a named group (?P<cell_id>...)")
        return value

    @field_validator("suffixes")
    @classmethod
    def _dotted_lower(cls, value: list[str]) -> list[str]:
        return [s.lower() if s.startswith(".") else f".{s.lower()}" for s in value]

    @property
    def done_path(self) -> Path:
        """Where files go once the daemon has a verdict for them."""
        return self.done_dir or self.folder / "done"

    @property
    def failed_path(self) -> Path:
        """Where unreadable files (and frames that got an ``error`` verdict) go."""
        return self.failed_dir or self.folder / "failed"


@dataclass
class _Pending:
    """What the source knows about a file it has not taken yet."""

    due: float
    sig: tuple[int, int] | None = None
    complete_hint: bool = False
    bad_sig: tuple[int, int] | None = None
    bad_since: float = 0.0
    why: str = ""
    digest: str | None = None  # of the unreadable bytes, so a crash does not repeat the error


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

    name = KIND

    def __init__(
        self,
        cfg: HotFolderSourceConfig,
        on_event: Callable[[str, Path], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self._folder = Path(cfg.folder).absolute()
        self._pattern = re.compile(cfg.cell_id_pattern) if cfg.cell_id_pattern else None
        self.on_event = on_event
        self._max_bytes = int(cfg.max_file_mb * 1e6)
        self._messages: queue.Queue[tuple[str, Path]] = queue.Queue()
        self._observer = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: dict[Path, Identity] = {}  # handed out, not yet filed away
        self._stuck: dict[Path, Identity] = {}  # inspected, but could not be filed away
        self._refused: dict[Path, Identity] = {}  # links, pipes...: logged once each
        self._folder_id: tuple[int, int] | None = None
        self._beat: Callable[[], None] = lambda: None

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Start watching; queue the files already in the folder. Raises SourceError if absent."""
        if not self._folder.is_dir():
            raise SourceError(f"hot folder {self._folder} does not exist")
        st = self._folder.stat()
        self._folder_id = (st.st_dev, st.st_ino)
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

    def watch_liveness(self, beat: Callable[[], None]) -> bool:
        """Call ``beat()`` at least once a second while waiting, and before each file."""
        self._beat = beat
        return True

    def frames(self) -> Iterator[Frame]:
        """Yield one frame per complete image file, oldest first, until ``close()``."""
        pending: dict[Path, _Pending] = {}
        while not self._closed.is_set():
            self._beat()
            self._check_folder()
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
                self._beat()
                taken = self._check(path, pending[path], now)
                if taken is None:
                    continue
                frame, identity = taken
                del pending[path]
                with self._lock:
                    self._in_flight[path] = identity
                self._emit(CORRUPT if frame.error else TAKEN, path)
                yield frame
                if self._closed.is_set():
                    return

    def ack(self, frame: Frame, ok: bool) -> bool:
        """Move the frame's file to ``done/`` (ok) or ``failed/`` (an error verdict).

        Returns True once the file is filed away. A file replaced since it was taken (the
        same name scanned again) stays and is inspected anew; one that cannot be moved stays
        too, is not taken again while unchanged, and does not block its name.
        """
        path = Path(frame.meta.get("path", ""))
        with self._lock:
            taken = self._in_flight.pop(path, None)
        if taken is None:
            return False
        now = _identity(path)
        if now is None:
            log.warning("%r was removed before it could be filed away", path.name)
            return False
        if now != taken:
            log.warning(
                "%r was replaced while it was inspected: the new file is inspected as well",
                path.name,
            )
            self._messages.put((_CHANGED, path))
            return False
        target_dir = self.cfg.done_path if ok else self.cfg.failed_path
        try:
            target = _free_name(target_dir / path.name)
            shutil.move(path, target)
        except OSError as exc:
            log.error(
                "could not move %r to %s: %s; it stays in the hot folder and is not inspected"
                " again unless it changes",
                path.name,
                target_dir,
                exc,
            )
            with self._lock:
                self._stuck[path] = taken
            return False
        self._emit(DONE if ok else FAILED, target)
        return True

    # -- internals --------------------------------------------------------------------------

    def _wanted(self, path: Path) -> bool:
        return path.parent == self._folder and path.suffix.lower() in self.cfg.suffixes

    def _check_folder(self) -> None:
        """Raise SourceError when the watched folder is gone or is no longer the same one."""
        try:
            st = self._folder.stat()
        except OSError:
            raise SourceError(f"hot folder {self._folder} disappeared") from None
        if (st.st_dev, st.st_ino) != self._folder_id:
            raise SourceError(
                f"hot folder {self._folder} was replaced (moved away or made anew):"
                " watching the new one"
            )

    def _note(self, pending: dict[Path, _Pending], what: str, path: Path) -> None:
        path = path.absolute()
        if what == _STOP:
            return
        if what == _GONE:
            pending.pop(path, None)
            with self._lock:
                self._stuck.pop(path, None)
            return
        if not self._wanted(path):
            return
        with self._lock:
            if path in self._in_flight:
                return  # ack() looks whether it was replaced meanwhile
            stuck = self._stuck.get(path)
            if stuck is not None:
                if stuck == _identity(path):
                    return
                del self._stuck[path]  # a new file under that name
        now = time.monotonic()
        entry = pending.setdefault(path, _Pending(due=now))
        if what == _COMPLETE:
            entry.complete_hint = True
            entry.due = now
        else:
            entry.complete_hint = False
            entry.due = now + (self.cfg.settle_s if entry.sig is not None else 0.0)

    def _check(self, path: Path, entry: _Pending, now: float) -> tuple[Frame, Identity] | None:
        """A frame and the file's identity if ``path`` is complete (or given up as corrupt);
        None to look again later."""
        try:
            st = path.lstat()
        except OSError:
            entry.due = float("inf")  # gone: its event drops it
            return None
        if not stat.S_ISREG(st.st_mode):
            self._refuse(path, st)
            entry.due = float("inf")  # looked at again when it changes
            return None
        identity = _identity_of(st)
        if st.st_size > self._max_bytes:
            why = (
                f"{st.st_size / 1e6:,.0f} MB is more than source.max_file_mb"
                f" ({self.cfg.max_file_mb:g} MB); not read"
            )
            return self._frame(path, None, why, None), identity
        sig = (st.st_size, st.st_mtime_ns)
        if not entry.complete_hint and sig != entry.sig:
            entry.sig = sig
            entry.due = now + self.cfg.settle_s
            self._emit(WAITING, path)
            return None
        entry.sig = sig
        entry.complete_hint = False
        if sig != entry.bad_sig:
            image, why, digest, read_id = _decode(path, self._max_bytes)
            if image is not None and read_id == identity and _identity(path) == identity:
                return self._frame(path, image, None, digest), identity
            if image is not None or (read_id is not None and read_id != identity):
                entry.due = now + self.cfg.settle_s  # changed while it was read
                return None
            entry.bad_sig, entry.bad_since = sig, now
            entry.why, entry.digest = why, digest
            self._emit(INCOMPLETE, path)
        if now - entry.bad_since >= self.cfg.corrupt_after_s:
            return self._frame(path, None, entry.why, entry.digest), identity
        entry.due = min(now + self.cfg.settle_s, entry.bad_since + self.cfg.corrupt_after_s)
        return None

    def _refuse(self, path: Path, st: os.stat_result) -> None:
        """Log once per file that ``path`` is not a regular file and is left alone."""
        identity = _identity_of(st)
        with self._lock:
            if self._refused.get(path) == identity:
                return
            self._refused[path] = identity
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        log.warning("%r in the hot folder is %s: skipped, left where it is", path.name, what)

    def _frame(
        self, path: Path, image: np.ndarray | None, error: str | None, digest: str | None
    ) -> Frame:
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
        if cell_id is not None and not CELL_ID.fullmatch(cell_id):
            error = (
                f"cell id {safe_text(cell_id)} from the file name is not valid (1-128 letters,"
                " digits or . _ : -, starting with a letter or digit); not inspected"
            )
            cell_id, product, image = None, None, None
        elif product is not None and not PRODUCT.fullmatch(product):
            error = f"product {safe_text(product)} from the file name is not valid"
            cell_id, product, image = None, None, None
        try:
            stamp = datetime.fromtimestamp(path.lstat().st_mtime, UTC)
        except OSError:
            stamp = datetime.now(UTC)
        if digest is not None:
            meta["sha256"] = digest
        return Frame(
            cell_id=cell_id or new_cell_id(self.cfg.cell_id_prefix),
            image=image,
            timestamp=stamp,
            product=product,
            meta=meta,
            error=f"{safe_text(path.name)}: {error}" if error else None,
        )

    def _emit(self, state: str, path: Path) -> None:
        log.debug("%s: %s", state, path)
        if self.on_event is not None:
            self.on_event(state, path)


def _identity_of(st: os.stat_result) -> Identity:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _identity(path: Path) -> Identity | None:
    """The identity of the file at ``path`` (not following a link), None when there is none."""
    try:
        return _identity_of(path.lstat())
    except OSError:
        return None


def _decode(
    path: Path, max_bytes: int
) -> tuple[np.ndarray | None, str, str | None, Identity | None]:
    """The image in ``path`` as stored (bit depth kept, colour BGR) or None and why not, the
    SHA-256 of its bytes and the identity of the file that was read.

    Opened without following links and without blocking (a pipe that replaced the file
    between ``lstat`` and here must not hang the grab thread).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})", None, None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        identity = _identity_of(st)
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file", None, identity
        try:
            raw = f.read(max_bytes + 1)
        except (OSError, MemoryError) as exc:
            return None, f"unreadable ({type(exc).__name__}: {exc})", None, identity
    if len(raw) > max_bytes:
        return None, f"more than {max_bytes / 1e6:g} MB", None, identity
    if not raw:
        return None, "empty file", None, identity
    digest = hashlib.sha256(raw).hexdigest()
    try:
        return decode_image(raw), "", digest, identity
    except ImageError as exc:
        return None, str(exc), digest, identity
    except MemoryError as exc:
        return None, f"not a readable image ({type(exc).__name__})", digest, identity


def _free_name(target: Path) -> Path:
    """``target``, or ``name-1.ext``, ``name-2.ext``... if a file of that name is there; the
    name shortened where the number would make it longer than a file name may be."""
    n = 0
    candidate = target
    while candidate.exists() or len(os.fsencode(candidate.name)) > NAME_MAX:
        n += 1
        tail = f"-{n}{target.suffix}"
        stem = target.stem
        while stem and len(os.fsencode(stem + tail)) > NAME_MAX:
            stem = stem[:-1]
        candidate = target.with_name(stem + tail)
    return candidate
