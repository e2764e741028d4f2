"""A real Mosquitto broker for tests, on a free port, plus a subscriber that collects messages.

The machine's own broker on 1883 is never used. ``Broker.stop()`` / ``start()`` simulate an
outage; persistence keeps durable sessions (``clean_session=False``) across it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server key/certificate (CN localhost, SAN 127.0.0.1) made with openssl."""

    def openssl(args: str) -> None:
        subprocess.run(["openssl", *args.split()], check=True, capture_output=True, cwd=folder)

    openssl(
        "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem"
    )
    openssl("req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -extfile san.ext -out server.pem"
    )
    for name in ("ca.key", "server.key"):
        (folder / name).chmod(0o600)
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


class Broker:
    """One ``mosquitto`` process with a generated config in ``folder``."""

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        users: dict[str, str] | None = None,
        tls: bool = False,
        settings: str = "",
    ) -> None:
        """``settings``: more mosquitto.conf lines (limits, ``acl_file``); a key given there
        replaces this class's default for it."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.conf = self.folder / "mosquitto.conf"
        auth = "allow_anonymous true\n"
        if users:  # only these users may connect
            pw = self.folder / "passwords"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            pw.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True, capture_output=True)
            auth = f"allow_anonymous false\npassword_file {pw}\n"
        self.ca_file: Path | None = None
        if tls:  # a throw-away CA and a server certificate for 127.0.0.1
            self.ca_file, cert, key = make_certificates(self.folder)
            auth += f"cafile {self.ca_file}\ncertfile {cert}\nkeyfile {key}\n"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # as root mosquitto would drop to user "mosquitto", who cannot write in tmp_path
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            f"{auth}"
            "persistence true\n"
            f"persistence_location {self.folder}/\n"
            f"log_dest file {self.folder}/mosquitto.log\n"
            + ("" if "max_queued_messages" in settings else "max_queued_messages 10000\n")
            + settings
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Broker:
        """Start the broker and return once it accepts TCP connections."""
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto not listening on {self.port}") from None
                # pace the retries by waiting on the process: an early exit shows at once
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=0.02)

    def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves its persistent sessions)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class Collector:
    """Subscribes to ``topic_root#`` and keeps every message; wait on them with a timeout."""

    def __init__(
        self,
        broker: Broker,
        topic_root: str,
        client_id: str = "test-collector",
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.messages: list[tuple[str, dict | str, bool]] = []
        self._cond = threading.Condition()
        self.topic_root = topic_root
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.reconnect_delay_set(0.1, 0.5)
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("collector did not subscribe")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self.topic_root + "#", qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            payload: dict | str = json.loads(msg.payload.decode())
        except ValueError:
            payload = msg.payload.decode(errors="replace")
        with self._cond:
            self.messages.append((msg.topic, payload, bool(msg.retain)))
            self._cond.notify_all()

    def on(self, name: str) -> list[dict]:
        """Payloads received on ``topic_root + name``, in arrival order."""
        with self._cond:
            return [p for t, p, _ in self.messages if t == self.topic_root + name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 30.0, where=None) -> list[dict]:
        """Block until ``count`` messages on ``name`` (matching ``where``) arrived."""

        def matching() -> list[dict]:
            return [p for p in self.on(name) if where is None or where(p)]

        with self._cond:
            ok = self._cond.wait_for(lambda: len(matching()) >= count, timeout)
        found = matching()
        if not ok:
            raise AssertionError(f"{len(found)} of {count} {name} message(s) within {timeout}s")
        return found

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish(broker: Broker, topic: str, payload: dict | str | bytes) -> None:
    """Publish one QoS 1 message and wait for the broker's PUBACK."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path):
    """A fresh Mosquitto on a free port, stopped after the test."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("the mosquitto binary is missing (make test installs it)")
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()
