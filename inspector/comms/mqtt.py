"""The station's MQTT link (paho-mqtt 2.x): results, alarms, status, heartbeat and triggers.

Topics under ``{prefix}/{line}/{station}/`` (prefix ``inspector/v1``), JSON payloads in UTF-8:

- ``result`` QoS 1, one per frame, drained in order from the store by the outbox
  (``inspector.comms.outbox``); the broker's PUBACK marks a row delivered. A result may be
  repeated after a crash (same ``frame_id``).
- ``alarm`` QoS 1: rejects and station faults, with a severity.
- ``status`` QoS 1 retained: ``online`` / ``degraded`` / ``offline``; the will sets offline.
  The daemon also reads it: a status someone else publishes while it runs is overwritten.
- ``availability`` QoS 1 retained: the plain strings ``online`` / ``offline`` (Home Assistant,
  Node-RED, Frigate convention), from a second connection whose will sets ``offline``: MQTT
  allows one will per connection and ``status`` has the other.
- ``heartbeat`` QoS 0: counters and rates.
- ``trigger`` subscribed QoS 1: ``{"cell_id": "...", "product": "..."}`` from the PLC.
- ``explanation`` QoS 1: published by the explainer through the same class and outbox.
- ``feedback`` subscribed QoS 1: ``{"cell_id", "label", "note", "user"}`` from an HMI: a
  technician's label of a reject (``inspector.comms.inbound``).
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import ssl
import sys
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from inspector.comms.inbound import json_object
from inspector.config.mqtt import MqttConfig
from inspector.config.station import ConfigError
from inspector.core.alarms import Alarm
from inspector.core.timestamps import utc_iso
from inspector.sources.base import CELL_ID, PRODUCT

log = logging.getLogger("inspector.comms.mqtt")

ALARM_SCHEMA = "inspector.alarm/1"
STATUS_SCHEMA = "inspector.status/1"
HEARTBEAT_SCHEMA = "inspector.heartbeat/1"
EXPLANATION_SCHEMA = "inspector.explanation/1"
TOPICS = (
    "result", "alarm", "status", "heartbeat", "trigger", "explanation", "feedback", "availability"
)
ONLINE, OFFLINE = b"online", b"offline"  # the availability payloads
SEVERITIES = ("info", "warning", "critical")


class TriggerError(ValueError):
    """A trigger payload that cannot be acted on; the message says why."""


def parse_trigger(payload: bytes) -> tuple[str, str | None]:
    """``(cell_id, product)`` of a trigger message, or ``TriggerError`` saying what is wrong.

    Example:
        >>> parse_trigger(b'{"cell_id": "C-0001", "product": "pouch"}')
        ('C-0001', 'pouch')
    """
    data = json_object(payload, TriggerError, "cell_id")
    cell_id, product = data.get("cell_id"), data.get("product")
    if not isinstance(cell_id, str) or not CELL_ID.fullmatch(cell_id):  # "$" allows "\n"
        raise TriggerError(
            "cell_id must be a string of 1-128 letters, digits or . _ : - starting with a"
            f" letter or digit, got {cell_id!r}"[:300]
        )
    if product is not None and (not isinstance(product, str) or not PRODUCT.fullmatch(product)):
        raise TriggerError(f"product must be a short name, got {product!r}"[:300])
    return cell_id, product


class _PahoLog(logging.LoggerAdapter):
    """paho's log under ``inspector.comms.mqtt.paho``, less the false alarm of a clean stop: after
    our own ``disconnect()`` paho 2.2's network thread runs once more and logs "Client is not
    connected" at ERROR; while the link stops that line goes to DEBUG."""

    def __init__(self, stopping: threading.Event) -> None:
        super().__init__(logging.getLogger("inspector.comms.mqtt.paho"), {})
        self.stopping = stopping

    def log(self, level: int, msg: object, *args: object, **kwargs) -> None:
        if self.stopping.is_set() and str(msg).startswith("Client is not connected"):
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)


class MqttLink:
    """One paho client for a station: publishes JSON, tracks PUBACKs, receives triggers.

    ``publish_row(name, row_id, payload)`` (an outbox row) reports ``row_id`` in
    ``delivered()`` once the broker acknowledges it; a link serves one outbox. Everything
    else is fire-and-forget at its QoS; paho keeps QoS 1 messages through a reconnect.

    Example:
        >>> link = MqttLink(cfg.mqtt, "line1", "st1", role="daemon")   # doctest: +SKIP
        >>> link.start(); link.set_status("online")                    # doctest: +SKIP
    """

    def __init__(
        self,
        cfg: MqttConfig,
        line: str,
        station: str,
        role: str = "daemon",
        on_trigger: Callable[[str, str | None], None] | None = None,
        will: bool = True,
        on_feedback: Callable[[bytes], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.root = f"{cfg.topic_prefix.rstrip('/')}/{line}/{station}/"
        self.line, self.station = line, station
        self.on_trigger = on_trigger
        self.on_feedback = on_feedback
        self.connected = threading.Event()
        self.refused = threading.Event()  # the broker said no (bad credentials, ...)
        self.refusal: str | None = None
        self._stopping = threading.Event()  # our own disconnect: nothing to warn about
        self._status = {"state": "online", "detail": ""}
        self._sent_status: collections.deque[bytes] = collections.deque(maxlen=8)
        self._last_correction = -1e9
        self._acks: queue.SimpleQueue[tuple[int, float]] = queue.SimpleQueue()
        self._pending: dict[int, int] = {}  # mid -> outbox row id
        self._early: dict[int, float] = {}  # mids acknowledged before publish() returned
        self._lock = threading.Lock()
        self.on_ack_signal: Callable[[], None] | None = None

        client_id = cfg.client_id or f"inspector-{role}-{line}-{station}"
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self.client.enable_logger(_PahoLog(self._stopping))  # type: ignore[arg-type]
        self.client.max_inflight_messages_set(max(20, min(cfg.inflight_window, 1000)))
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.resolved_password())
        if cfg.tls is not None:
            for key, path in cfg.tls:  # ssl names no file when one is missing
                if key.endswith("_file") and path is not None and not path.is_file():
                    raise ConfigError(f"mqtt.tls.{key}: {path} is not a readable file")
            try:
                self.client.tls_set(
                    ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                    certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                    keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ssl.SSLError) as exc:  # not PEM, key and certificate mismatch
                raise ConfigError(f"mqtt.tls: cannot load the PEM files: {exc}") from None
            self.client.tls_insecure_set(cfg.tls.insecure)
        if will:
            self.client.will_set(
                self.topic("status"), self._status_payload("offline", "connection lost"), 1, True
            )
        self._will = will
        self.availability = AvailabilityLink(self, client_id) if will else None
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    # --- life cycle ----------------------------------------------------------------------

    def topic(self, name: str) -> str:
        """The full topic of ``result``, ``alarm``, ``status``, ``heartbeat``, ``trigger``..."""
        if name not in TOPICS:
            raise ValueError(f"unknown topic {name!r}; one of {TOPICS}")
        return self.root + name

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself with back-off."""
        self._stopping.clear()
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        if self.availability is not None:
            self.availability.start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the broker accepted the connection (True) or ``timeout`` passed."""
        return self.connected.wait(timeout)

    def stop(self, final_status: str | None = "offline", timeout: float = 5.0) -> None:
        """Publish the final status (when connected), then disconnect cleanly."""
        if final_status and self.connected.is_set() and self._will:
            self._status = {"state": final_status, "detail": "stopped"}
            payload = self._status_payload(final_status, "stopped")
            self._sent_status.append(payload)  # its echo is ours, not a forgery
            info = self.client.publish(self.topic("status"), payload, 1, True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("final status not confirmed: %s", exc)
        if self.availability is not None:
            self.availability.stop(timeout)
        self._stopping.set()
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            self.refusal = str(reason_code)
            self.refused.set()
            return
        log.info("connected to %s:%s", self.cfg.host, self.cfg.port)
        if self.on_trigger is not None:
            client.subscribe(self.topic("trigger"), qos=1)
        if self.on_feedback is not None:
            client.subscribe(self.topic("feedback"), qos=1)
        if self._will:
            client.subscribe(self.topic("status"), qos=1)  # to correct a forged status
            self._publish_status()
        self.connected.set()
        if self.on_ack_signal:
            self.on_ack_signal()

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its ``except OSError`` and logs nothing above DEBUG
        exc = sys.exc_info()[1]
        reason = f"{type(exc).__name__}: {exc}" if exc else "connection failed"
        if reason != self.refusal:
            log.error("cannot connect to %s:%s: %s", self.cfg.host, self.cfg.port, reason)
        self.refusal = reason
        if isinstance(exc, ssl.SSLError):  # untrusted or wrong certificate: retrying won't help
            self.refused.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._stopping.is_set():
            log.info("disconnected from the broker")
        elif self.connected.is_set():
            log.warning("disconnected from the broker: %s", reason_code)
        self.connected.clear()

    # --- publishing ----------------------------------------------------------------------

    def publish_json(
        self, name: str, payload: dict, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        """Publish ``payload`` as compact UTF-8 JSON on topic ``name``."""
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return self.client.publish(self.topic(name), data, qos=qos, retain=retain)

    def publish_row(self, name: str, row_id: int, payload: dict) -> int:
        """Hand one outbox row to the client on topic ``name`` (QoS 1); its PUBACK shows up in
        ``delivered()``. Returns the message id."""
        sent = time.monotonic()
        info = self.publish_json(name, payload, qos=1)
        with self._lock:
            acked = self._early.pop(info.mid, None)
            # an older entry is the ack of an earlier message with this id (ids wrap at 65535)
            if acked is not None and acked >= sent:
                self._acks.put((row_id, acked))
            else:
                self._pending[info.mid] = row_id
        return info.mid

    def in_flight(self) -> int:
        """Outbox rows handed to the client and not yet acknowledged."""
        with self._lock:
            return len(self._pending)

    def delivered(self) -> list[tuple[int, float]]:
        """``(row_id, monotonic time of PUBACK)`` of outbox rows acknowledged since the last
        call."""
        out = []
        while True:
            try:
                out.append(self._acks.get_nowait())
            except queue.Empty:
                return out

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # runs on paho's thread with its message lock held: only bookkeeping here
        if reason_code.is_failure:
            log.error("broker rejected message %s: %s", mid, reason_code)
            return
        now = time.monotonic()
        with self._lock:
            row = self._pending.pop(mid, None)
            if row is None:
                self._early[mid] = now
                if len(self._early) > 4096:  # acks of alarms/status: forget the oldest
                    for old in sorted(self._early, key=self._early.get)[:2048]:
                        del self._early[old]
                return
        self._acks.put((row, now))
        if self.on_ack_signal:
            self.on_ack_signal()

    def _status_payload(self, state: str, detail: str) -> bytes:
        payload = {
            "schema": STATUS_SCHEMA,
            "line": self.line,
            "station": self.station,
            "state": state,
            "detail": detail,
            "ts": utc_iso(),
        }
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def set_status(self, state: str, detail: str = "") -> None:
        """Publish the retained status (``online``/``degraded``/``offline``) if it changed."""
        if {"state": state, "detail": detail} == self._status:
            return
        self._status = {"state": state, "detail": detail}
        log.info("status %s %s", state, detail)
        if self.connected.is_set():
            self._publish_status()

    def _publish_status(self) -> None:
        """Publish the current status, retained, and remember it as one of ours."""
        payload = self._status_payload(self._status["state"], self._status["detail"])
        self._sent_status.append(payload)
        self.client.publish(self.topic("status"), payload, 1, True)

    def _status_seen(self, message) -> None:
        """A status message on our own topic: one published by someone else while we run
        (a forged ``offline``, a stale second instance) is overwritten with ours."""
        if message.retain or message.payload in self._sent_status:
            return  # the retained one at subscribe is replaced by ours anyway; or our echo
        now = time.monotonic()
        if now - self._last_correction < 1.0:  # a flood of forgeries: one correction a second
            return
        self._last_correction = now
        log.warning(
            "someone else published on %s: %r; publishing ours again",
            message.topic,
            message.payload[:200],
        )
        self.alarm(
            Alarm.FOREIGN_STATUS,
            "warning",
            "another client published this station's status; the station's own was restored"
            " (check the broker's ACL, see the operator guide)",
        )
        self._publish_status()

    @property
    def status(self) -> str:
        return self._status["state"]

    def alarm(self, kind: str, severity: str, message: str, **extra: object) -> None:
        """Publish an alarm (QoS 1; kept by the client through a short outage)."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")
        payload = {
            "schema": ALARM_SCHEMA,
            "line": self.line,
            "station": self.station,
            "ts": utc_iso(),
            "kind": kind,
            "severity": severity,
            "message": message,
            **extra,
        }
        self.publish_json("alarm", payload, qos=1)

    def heartbeat(self, counters: dict) -> None:
        """Publish the heartbeat (QoS 0, only while connected)."""
        if self.connected.is_set():
            payload = {
                "schema": HEARTBEAT_SCHEMA,
                "line": self.line,
                "station": self.station,
                "ts": utc_iso(),
                **counters,
            }
            self.publish_json("heartbeat", payload, qos=0)

    def explanation_payload(self, cell_id: str, frame_id: str, text: str, backend: str) -> dict:
        """The ``explanation`` message of a reject, stamped now."""
        return {
            "schema": EXPLANATION_SCHEMA,
            "line": self.line,
            "station": self.station,
            "cell_id": cell_id,
            "frame_id": frame_id,
            "ts": utc_iso(),
            "text": text,
            "backend": backend,
        }

    def publish_explanation(
        self, cell_id: str, frame_id: str, text: str, backend: str
    ) -> mqtt.MQTTMessageInfo:
        """Publish an explanation of a reject (QoS 1) outside the outbox."""
        payload = self.explanation_payload(cell_id, frame_id, text, backend)
        return self.publish_json("explanation", payload, qos=1)

    # --- triggers ------------------------------------------------------------------------

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == self.topic("status") and self._will:
            self._status_seen(message)
            return
        if message.topic == self.topic("feedback") and self.on_feedback is not None:
            try:
                self.on_feedback(message.payload)
            except Exception:  # a failing handler must not kill paho's thread
                log.exception("feedback message failed")
            return
        if message.topic != self.topic("trigger") or self.on_trigger is None:
            return
        try:
            cell_id, product = parse_trigger(message.payload)
        except TriggerError as exc:
            log.warning("bad trigger ignored: %s", exc)
            self.alarm(Alarm.BAD_TRIGGER, "warning", f"trigger ignored: {exc}")
            return
        try:
            self.on_trigger(cell_id, product)
        except Exception as exc:  # a failing handler must not kill paho's thread
            log.exception("trigger for %s failed", cell_id)
            message = f"trigger {cell_id}: {exc}"
            self.alarm(Alarm.TRIGGER_FAILED, "warning", message, cell_id=cell_id)


class AvailabilityLink:
    """The plain ``availability`` topic: ``online`` on connect, ``offline`` as will and at stop.

    A connection of its own (client id ``<station's>-availability``, same broker settings), as
    the station's connection already carries the JSON ``status`` will. Both connections end
    with the process, so a dead daemon shows ``offline`` on both topics.
    """

    def __init__(self, link: MqttLink, client_id: str) -> None:
        self.topic = link.topic("availability")
        self.connected = threading.Event()
        self._cfg = link.cfg
        self._stopping = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{client_id}-availability"[:65535],
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self.client.enable_logger(_PahoLog(self._stopping))  # type: ignore[arg-type]
        self.client.reconnect_delay_set(self._cfg.reconnect_min_s, self._cfg.reconnect_max_s)
        if self._cfg.username:
            self.client.username_pw_set(self._cfg.username, self._cfg.resolved_password())
        if self._cfg.tls is not None:  # the files were checked by the station's link
            tls = self._cfg.tls
            self.client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            self.client.tls_insecure_set(tls.insecure)
        self.client.will_set(self.topic, OFFLINE, 1, True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:  # the station's own link logs the refusal
            return
        client.publish(self.topic, ONLINE, 1, True)
        self.connected.set()

    def start(self) -> None:
        self._stopping.clear()
        self.client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s)
        self.client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """``offline`` (retained), then a clean disconnect (which does not fire the will)."""
        if self.connected.is_set():
            info = self.client.publish(self.topic, OFFLINE, 1, True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("final availability not confirmed: %s", exc)
        self._stopping.set()
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
