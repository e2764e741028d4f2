"""The MQTT link against a real Mosquitto: status and will, PUBACK, auth, TLS."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspector.comms.mqtt import MqttLink, TriggerError, parse_trigger
from inspector.comms.outbox import OutboxPublisher
from inspector.config.mqtt import MqttConfig
from inspector.store.db import Store
from tests.broker import Broker, Collector

ROOT = "inspector/v1/L1/S1/"


def link_for(broker: Broker, **cfg) -> MqttLink:
    mqtt = MqttConfig(host="127.0.0.1", port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    return MqttLink(mqtt.model_copy(update=cfg), "L1", "S1", role="test")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"cell_id": "C-0001"}', ("C-0001", None)),
        (b'{"cell_id": "2026.11.25:A_7", "product": "pouch 5Ah"}', ("2026.11.25:A_7", "pouch 5Ah")),
    ],
)
def test_valid_triggers_give_the_cell_and_product(payload: bytes, expected) -> None:
    assert parse_trigger(payload) == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"C-0001", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'["C-0001"]', "JSON object"),
        (b"{}", "cell_id must be"),
        (b'{"cell_id": ""}', "cell_id must be"),
        (b'{"cell_id": "a/b"}', "cell_id must be"),
        (b'{"cell_id": "' + b"x" * 200 + b'"}', "cell_id must be"),
        (b'{"cell_id": "C1", "product": {"a": 1}}', "product must be"),
    ],
)
def test_bad_triggers_say_what_is_wrong(payload: bytes, reason: str) -> None:
    with pytest.raises(TriggerError, match=reason):
        parse_trigger(payload)


def test_status_is_retained_online_and_offline_after_a_clean_stop(broker: Broker) -> None:
    link = link_for(broker)
    link.start()
    assert link.wait_connected(10)
    link.set_status("degraded", "camera lost")
    late = Collector(broker, ROOT, client_id="late")  # joins after: sees the retained status
    try:
        status = late.wait_for("status", where=lambda p: p["state"] == "degraded")[0]
        assert status["detail"] == "camera lost" and status["station"] == "S1"
        link.stop("offline")
        late.wait_for("status", where=lambda p: p["state"] == "offline")
    finally:
        late.close()


@pytest.mark.skipif(not shutil.which("mosquitto_passwd"), reason="needs mosquitto_passwd")
def test_username_and_password_come_from_the_config_and_environment(
    tmp_path: Path, monkeypatch
) -> None:
    broker = Broker(tmp_path / "broker", users={"station": "right"}).start()
    try:
        monkeypatch.setenv("TEST_MQTT_PASSWORD", "right")
        good = link_for(broker, username="station", password_env="TEST_MQTT_PASSWORD")
        good.start()
        assert good.wait_connected(10)
        good.stop()
        wrong = link_for(broker, username="station", password_env=None, password=None)
        wrong.start()
        assert wrong.refused.wait(10) and not wrong.connected.is_set()
        assert "Not authorized" in wrong.refusal or "not authorised" in wrong.refusal.lower()
        wrong.stop(final_status=None)
    finally:
        broker.stop()


def test_the_explainer_publishes_explanations_through_the_same_class(broker: Broker) -> None:
    collector = Collector(broker, ROOT)
    link = MqttLink(
        MqttConfig(host="127.0.0.1", port=broker.port), "L1", "S1", role="explainer", will=False
    )
    link.start()
    assert link.wait_connected(10)
    link.publish_explanation(
        "C-1", "S1-f1", "One bubble, upper left.", "template"
    ).wait_for_publish(10)
    got = collector.wait_for("explanation")[0]
    link.stop()
    collector.close()
    assert got["text"] == "One bubble, upper left." and got["frame_id"] == "S1-f1"
    assert got["schema"] == "inspector.explanation/1" and got["ts"].endswith("Z")
    assert collector.on("status") == [], "the explainer does not speak for the station's status"


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make certificates")
def test_results_travel_over_tls_with_the_configured_ca(tmp_path: Path) -> None:
    from inspector.config.mqtt import TLSConfig

    broker = Broker(tmp_path / "broker", tls=True).start()
    store = Store(tmp_path / "data")
    link = link_for(broker, tls=TLSConfig(ca_file=broker.ca_file))
    outbox = OutboxPublisher(store, link)
    try:
        link.start()
        outbox.start()
        assert link.wait_connected(10), "TLS handshake with the test CA"
        store.record({"frame_id": "tls-1", "cell_id": "c", "verdict": "pass"}, None, None)
        outbox.wake()
        assert outbox.flush(10) and store.backlog() == 0, "acknowledged over TLS"
    finally:
        outbox.stop()
        link.stop()
        store.close()
        broker.stop()
    untrusted = link_for(broker.start(), tls=TLSConfig())  # system CAs do not know this one
    try:
        untrusted.start()
        assert untrusted.refused.wait(10) and not untrusted.connected.is_set()
        assert "certificate verify failed" in untrusted.refusal
    finally:
        untrusted.stop(final_status=None)
        broker.stop()


def test_a_reused_message_id_does_not_count_an_old_ack_for_a_new_result(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    link = link_for(broker)
    try:
        link.start()
        assert link.wait_connected(10)
        alarm = link.publish_json("alarm", {"kind": "test"}, qos=1)
        alarm.wait_for_publish(10)  # its PUBACK is kept, as no result waits for it
        broker.stop()
        link.client._last_mid = alarm.mid - 1  # ids wrap at 65535: the next message reuses it
        assert link.publish_row("result", 7, {"frame_id": "f7"}) == alarm.mid
        assert link.delivered() == [], "the broker never acknowledged this result"
        assert link.in_flight() == 1
    finally:
        link.stop(final_status=None)
        broker.stop()


def test_availability_is_a_plain_retained_online_then_offline_also_by_the_will(
    broker: Broker,
) -> None:
    link = link_for(broker)
    link.start()
    assert link.wait_connected(10) and link.availability.connected.wait(10)
    first = Collector(broker, ROOT, client_id="first")
    first.wait_for("availability", where=lambda p: p == "online")  # the broker has it now
    first.close()
    late = Collector(broker, ROOT, client_id="late")  # joins after: sees the retained one
    try:
        assert late.wait_for("availability") == ["online"]
        assert [retained for t, _, retained in late.messages if t.endswith("availability")] == [
            True
        ]
        link.stop("offline")
        assert late.wait_for("availability", 2)[-1] == "offline"
    finally:
        late.close()

    # a process that dies says nothing: both connections just drop, the broker sends the wills
    # (another station, so that nothing retained above is taken for the will)
    mqtt = MqttConfig(host="127.0.0.1", port=broker.port, reconnect_min_s=0.1)
    link = MqttLink(mqtt, "L1", "S2", role="test")
    link.start()
    assert link.wait_connected(10) and link.availability.connected.wait(10)
    watcher = Collector(broker, "inspector/v1/L1/S2/", client_id="watcher")
    try:
        assert watcher.wait_for("availability") == ["online"]
        assert watcher.wait_for("status")[0]["state"] == "online"
        for client in (link.client, link.availability.client):
            client.loop_stop()
            client.socket().close()
        assert watcher.wait_for("availability", where=lambda p: p == "offline")
        status = watcher.wait_for("status", where=lambda p: p["state"] == "offline")[0]
        assert status["detail"] == "connection lost"
    finally:
        watcher.close()
