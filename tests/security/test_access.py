"""MQTT access: a Mosquitto that requires TLS and a password, with its own throw-away CA.

The station talks to it end to end (trigger in, result out, both encrypted and logged in);
a wrong password, no password or an untrusted CA is refused with an error that says which.
"""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pydantic import SecretStr

from inspector.comms.mqtt import MqttLink
from inspector.config.mqtt import MqttConfig, TLSConfig
from inspector.station.daemon import Daemon
from tests.broker import Broker, make_certificates
from tests.inspector.daemon_helpers import TOPIC_ROOT, QueueSource, make_config, running

pytestmark = pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("mosquitto_passwd")),
    reason="needs openssl (certificates) and mosquitto_passwd (password file)",
)
USERS = {"station": "right-horse-battery", "plc": "staple-7"}


@pytest.fixture
def secure_broker(tmp_path: Path):
    """Mosquitto on a free port that accepts only TLS with the test CA and known users."""
    broker = Broker(tmp_path / "broker", users=USERS, tls=True).start()
    yield broker
    broker.stop()


def tls_client(broker: Broker, user: str, password: str, on_message=None) -> mqtt.Client:
    """A connected paho client (the PLC, the MES) over TLS with the test CA."""
    connected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{user}")
    client.tls_set(ca_certs=str(broker.ca_file), cert_reqs=ssl.CERT_REQUIRED)
    client.username_pw_set(user, password)
    client.on_connect = lambda c, u, f, rc, p: rc.is_failure or connected.set()
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert connected.wait(10), "test client not let in"
    return client


def station_link(broker: Broker, password: str | None = None, **cfg) -> MqttLink:
    cfg["password"] = SecretStr(password) if password is not None else None
    base = MqttConfig(host="127.0.0.1", port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    return MqttLink(base.model_copy(update=cfg), "L1", "S1", role="test")


def test_station_inspects_over_tls_with_a_password_from_the_environment(
    tmp_path: Path, secure_broker: Broker, line_bundle: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TEST_STATION_PASSWORD", USERS["station"])
    mqtt_cfg = {"username": "station", "password_env": "TEST_STATION_PASSWORD"}
    cfg = make_config(
        tmp_path, line_bundle, secure_broker.port,
        mqtt=mqtt_cfg | {"tls": {"ca_file": str(secure_broker.ca_file)}},
    )  # fmt: skip
    messages: list[tuple[str, dict]] = []
    got = threading.Condition()
    subscribed = threading.Event()

    def on_message(client, userdata, msg) -> None:
        topic = msg.topic.removeprefix(TOPIC_ROOT)
        if topic == "availability":  # plain text, not JSON
            return
        with got:
            messages.append((topic, json.loads(msg.payload)))
            got.notify_all()

    def seen(topic: str, where=lambda p: True) -> list[dict]:
        return [p for t, p in messages if t == topic and where(p)]

    mes = tls_client(secure_broker, "plc", USERS["plc"], on_message)
    mes.on_subscribe = lambda *a: subscribed.set()
    mes.subscribe(TOPIC_ROOT + "#", qos=1)
    assert subscribed.wait(10)
    try:
        with running(Daemon(cfg, source=QueueSource())) as daemon:
            with got:  # online is published after the daemon subscribed to its triggers
                assert got.wait_for(lambda: seen("status", lambda p: p["state"] == "online"), 30)
            mes.publish(TOPIC_ROOT + "trigger", json.dumps({"cell_id": "TLS-1"}), qos=1)
            with got:
                assert got.wait_for(lambda: seen("result"), 30), "no result over TLS"
            assert daemon.outbox.flush(10) and daemon.store.backlog() == 0
    finally:
        mes.loop_stop()
        mes.disconnect()
    results = seen("result")
    assert results[0]["cell_id"] == "TLS-1" and results[0]["verdict"] == "pass"


@pytest.mark.parametrize(
    ("username", "password"),
    [("station", "wrong"), ("station", None), (None, None), ("intruder", "right-horse-battery")],
)
def test_wrong_or_missing_credentials_are_refused_and_said_so(
    secure_broker: Broker, username, password, caplog
) -> None:
    link = station_link(
        secure_broker,
        username=username,
        password=password,
        tls=TLSConfig(ca_file=secure_broker.ca_file),
    )
    with caplog.at_level(logging.ERROR, logger="inspector.comms.mqtt"):
        link.start()
        try:
            assert link.refused.wait(10) and not link.connected.is_set()
        finally:
            link.stop(final_status=None)
    assert "Not authorized" in link.refusal or "not authorised" in link.refusal.lower()
    assert any("refused the connection" in r.getMessage() for r in caplog.records)


def test_an_untrusted_ca_is_refused_with_a_clear_error(
    tmp_path: Path, secure_broker: Broker, caplog
) -> None:
    other = tmp_path / "other-ca"
    other.mkdir()
    other_ca, _, _ = make_certificates(other)  # a CA the broker's certificate does not chain to
    link = station_link(
        secure_broker,
        username="station",
        password=USERS["station"],
        tls=TLSConfig(ca_file=other_ca),
    )
    with caplog.at_level(logging.ERROR, logger="inspector.comms.mqtt"):
        link.start()
        try:
            assert link.refused.wait(10) and not link.connected.is_set()
        finally:
            link.stop(final_status=None)
    assert "certificate verify failed" in link.refusal
    errors = [r.getMessage() for r in caplog.records if r.name == "inspector.comms.mqtt"]
    assert any(f"cannot connect to 127.0.0.1:{secure_broker.port}" in e for e in errors)
    assert len(errors) == 1, "one error, not one per retry"
