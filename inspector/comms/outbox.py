"""The outbox: what the station must not lose on MQTT, results and explanations alike.

Each message is committed to the store before it is published (a row of ``store.results`` or
``store.explanations``), handed to the MQTT client in id order, a window at a time and only
while connected, and marked published when the broker's PUBACK arrives. So a crash or a broker
outage delays messages but loses none; one may be published twice, with the same
``frame_id``. Rows handed before an outage are re-sent by paho itself on reconnect (same
order), the rest follow from the store; a restart starts again from the oldest unpublished row.

The daemon publishes results through one, the explainer explanations through another.

Example:
    >>> outbox = OutboxPublisher(store, link, window=100); outbox.start()     # doctest: +SKIP
    >>> outbox.offer(store.record(result, None, None), result)  # the daemon   # doctest: +SKIP
    >>> explained = OutboxPublisher(store, link, topic="explanation")         # doctest: +SKIP
    >>> explained.start(); explained.wake()  # after one is stored   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from inspector.comms.mqtt import MqttLink
from inspector.store.db import Store

log = logging.getLogger("inspector.comms.outbox")

OUTBOX_TOPICS = ("result", "explanation")  # each is a table of the store
RESCAN_S = 2.0  # rows another process stored (a second explainer) are found within this


class OutboxTable(Protocol):
    """The store's side of an outbox: one table's rows, ``{"id", "payload"}``, ids rising."""

    def unpublished(self, after_id: int = 0, limit: int | None = None) -> list[dict]: ...

    def mark_published(self, row_ids: list[int]) -> None: ...


class OutboxPublisher:
    """Drains one table of the store in order, a window at a time, and marks PUBACKs.

    Args:
        store: the station's store.
        link: the MQTT link; its acknowledgements are this outbox's (one outbox per link).
        window: rows handed to the client and not yet acknowledged, at most.
        on_delivered: called as ``on_delivered(row_id, monotonic time of the PUBACK)``.
        topic: ``result`` (``store.results``, published as stored) or ``explanation``
            (``store.explanations``, published in the explanation message, stamped then).
    """

    def __init__(
        self,
        store: Store,
        link: MqttLink,
        window: int = 100,
        on_delivered: Callable[[int, float], None] | None = None,
        topic: str = "result",
    ) -> None:
        if topic not in OUTBOX_TOPICS:
            raise ValueError(f"topic must be one of {OUTBOX_TOPICS}, got {topic!r}")
        self.topic = topic
        self.table: OutboxTable = store.results if topic == "result" else store.explanations
        self.link = link
        self.window = window
        self.on_delivered = on_delivered
        self._wake = threading.Event()
        self._acked = threading.Event()
        self._stop = threading.Event()
        self._last_handed = 0
        self._behind = True  # the store may hold rows not yet handed (old ones at start)
        self._hand_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"{topic}-outbox", daemon=True)
        link.on_ack_signal = self._wake.set  # acks and (re)connects: no new rows to look for

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """New rows in the store: look for them and drain now."""
        with self._hand_lock:
            self._behind = True
        self._wake.set()

    def offer(self, row_id: int, payload: dict) -> None:
        """A row just stored: publish it at once when nothing older waits, else drain.

        Saves the drain thread's wake-up and query on the common path (connected, caught up).
        """
        with self._hand_lock:
            if row_id <= self._last_handed:  # the drain thread was quicker
                return
            if (
                not self._behind
                and self.link.connected.is_set()
                and self.link.in_flight() < self.window
            ):
                self._hand(row_id, payload)
                return
            self._behind = True
        self._wake.set()

    def _hand(self, row_id: int, payload: dict) -> None:
        if self.topic == "explanation":
            payload = self.link.explanation_payload(**payload)
        self.link.publish_row(self.topic, row_id, payload)
        self._last_handed = row_id

    def _step(self) -> None:
        self._mark(self.link.delivered())
        with self._hand_lock:
            if not self.link.connected.is_set():
                self._behind = True
                return
            room = self.window - self.link.in_flight()
            if room <= 0 or not self._behind:  # caught up: offer() publishes new rows itself
                return
            rows = self.table.unpublished(after_id=self._last_handed, limit=room)
            for row in rows:
                self._hand(row["id"], row["payload"])
            self._behind = len(rows) >= room

    def _run(self) -> None:
        rescan_at = time.monotonic() + RESCAN_S
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if time.monotonic() >= rescan_at:
                rescan_at = time.monotonic() + RESCAN_S
                with self._hand_lock:
                    self._behind = True
            try:
                self._step()
            except Exception:  # a locked database, a closed store: try again
                log.exception("%s outbox step failed; retrying", self.topic)
                time.sleep(0.5)

    def flush(self, timeout: float) -> bool:
        """Wait until every stored row is acknowledged (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self.table.unpublished(limit=1):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._acked.clear()
            self.wake()
            self._acked.wait(min(left, 0.1))
        return True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._mark(self.link.delivered())

    def _mark(self, acks: list[tuple[int, float]]) -> None:
        if not acks:
            return
        self.table.mark_published([row_id for row_id, _ in acks])
        if self.on_delivered:
            for row_id, t in acks:
                self.on_delivered(row_id, t)
        self._acked.set()
