"""Explanations go out through an outbox, as results do: stored first, published in order,
marked when the broker acknowledges them, so a broker outage delays them but loses none.

Example:
    >>> outbox = ExplanationOutbox(store, link); outbox.start()   # doctest: +SKIP
    >>> outbox.wake()     # after an explanation was stored          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("inspector.explain")


class ExplanationOutbox:
    """Publishes the store's unpublished explanations while the link is connected.

    Args:
        store: an ``inspector.store.db.Store`` (``explanations``).
        link: an ``inspector.comms.mqtt.MqttLink``.
        window: explanations handed to the client at a time.
        ack_timeout_s: how long to wait for the broker's PUBACK before trying again later.
        poll_s: how often to look for explanations when nobody calls ``wake``.
    """

    def __init__(
        self, store, link, window: int = 20, ack_timeout_s: float = 10.0, poll_s: float = 2.0
    ) -> None:
        self.store, self.link = store, link
        self.window, self.ack_timeout_s, self.poll_s = window, ack_timeout_s, poll_s
        self._wake = threading.Event()
        self._drain_lock = threading.Lock()  # the thread and flush(): each row sent once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="explanation-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """An explanation was stored: publish it now."""
        self._wake.set()

    def drain_once(self) -> int:
        """Publish one window of stored explanations; the number the broker acknowledged."""
        with self._drain_lock:
            return self._drain()

    def _drain(self) -> int:
        if not self.link.connected.is_set():
            return 0
        rows = self.store.explanations.unpublished(limit=self.window)
        sent = [(row, self.link.publish_explanation(**row["payload"])) for row in rows]
        acked = []
        for row, info in sent:
            try:
                info.wait_for_publish(self.ack_timeout_s)
            except (RuntimeError, ValueError) as exc:  # the link went down meanwhile
                log.info("explanation %s not acknowledged yet: %s", row["id"], exc)
                break
            if not info.is_published():
                break
            acked.append(row["id"])
        self.store.explanations.mark_published(acked)
        return len(acked)

    def backlog(self) -> int:
        """Explanations stored and not yet acknowledged (up to a window's worth and more)."""
        return len(self.store.explanations.unpublished())

    def flush(self, timeout: float) -> bool:
        """Publish until none is left (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while self.store.explanations.unpublished(limit=1):
            if time.monotonic() > deadline:
                return False
            if not self.drain_once():
                self.link.connected.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while self.drain_once() >= self.window:  # more waiting: go on at once
                    pass
            except Exception:  # a locked database, a closed store: try again later
                log.exception("publishing explanations failed; retrying")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(self.ack_timeout_s + 5)
