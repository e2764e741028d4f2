"""Waiting on the file system without sleeping: woken by file events, the condition re-checked."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path


def wait_until(folder: Path, condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Block until ``condition()`` holds, re-checking on each change under ``folder``.

    Raises ``AssertionError`` naming ``what`` after ``timeout`` seconds.
    """
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    changed = threading.Event()
    handler = FileSystemEventHandler()
    handler.on_any_event = lambda event: changed.set()
    observer = Observer()
    observer.schedule(handler, str(folder), recursive=True)
    observer.start()
    try:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
            changed.wait(1.0)  # an event, or look again in a second (changes seen by no event)
            changed.clear()
    finally:
        observer.stop()
        observer.join()
