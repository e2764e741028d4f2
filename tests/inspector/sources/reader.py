"""A source read by a background thread, so a test can wait on its frames with a timeout."""

from __future__ import annotations

import queue
import threading

from inspector.sources import Frame, Source

TIMEOUT = 10.0


class Reader:
    """Opens ``source`` and iterates ``frames()`` in a thread into the ``frames`` queue."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.frames: queue.Queue[Frame] = queue.Queue()
        self.error: BaseException | None = None
        self.finished = threading.Event()
        source.open()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for frame in self.source.frames():
                self.frames.put(frame)
        except BaseException as exc:  # handed to the test through .error
            self.error = exc
        finally:
            self.finished.set()

    def take(self, n: int = 1) -> list[Frame]:
        """The next ``n`` frames; fails the test if they do not come within the timeout."""
        return [self.frames.get(timeout=TIMEOUT) for _ in range(n)]

    def close(self) -> None:
        """Close the source and check that ``frames()`` returned."""
        self.source.close()
        self._thread.join(timeout=TIMEOUT)
        assert not self._thread.is_alive(), "frames() did not return after close()"
