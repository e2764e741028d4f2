"""The operator guide's Mosquitto ACL (``systemd/mosquitto.example.acl``) on a real broker with
a password file, and a forged retained status on an open broker.

With the ACL the station writes only its own topics, only the PLC's user may trigger, and
nobody else can forge a result or the station's status. Without it, a forged retained
``offline`` is overwritten by the running daemon at once.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from inspector.station.daemon import Daemon
from tests.broker import MOSQUITTO, Broker, Collector
from tests.inspector.daemon_helpers import TOPIC_ROOT, QueueSource, make_config, running

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_ACL = REPO / "systemd" / "mosquitto.example.acl"
USERS = {"inspector-station-1": "st-secret", "plc": "plc-secret", "scada": "scada-secret"}

pytestmark = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="the mosquitto binary is missing (make test installs it)"
)


def acl_for_station(folder: Path) -> Path:
    """The example ACL with the test station's line and station names."""
    text = EXAMPLE_ACL.read_text().replace("line-1/station-1", "L1/S1").replace("line-1", "L1")
    path = folder / "inspector.acl"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def send(port: int, user: str | None, topic: str, payload: dict, retain: bool = False) -> bool:
    """Publish once as ``user``; False when the broker refuses the connection. Waits for the
    broker's PUBACK, which mosquitto also sends for a message its ACL drops."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"forger-{user}")
    if user is not None:
        client.username_pw_set(user, USERS[user])
    answered, accepted = threading.Event(), threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            accepted.set()
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(10), "no CONNACK"
        if not accepted.is_set():
            return False
        info = client.publish(TOPIC_ROOT + topic, json.dumps(payload), qos=1, retain=retain)
        info.wait_for_publish(10)
        return True
    finally:
        client.disconnect()
        client.loop_stop()


def retained_status(broker: Broker, auth: tuple[str, str] | None, name: str) -> dict:
    """The retained status a subscriber that connects now receives first."""
    fresh = Collector(broker, TOPIC_ROOT, client_id=name, auth=auth)
    try:
        return fresh.wait_for("status", timeout=10)[0]
    finally:
        fresh.close()


def test_the_example_acl_lets_only_the_plc_trigger_and_nobody_forge(
    tmp_path: Path, line_bundle: Path
) -> None:
    acl = acl_for_station(tmp_path / "broker")
    broker = Broker(tmp_path / "broker", users=USERS, settings=f"acl_file {acl}\n").start()
    scada = ("scada", USERS["scada"])
    collector = Collector(broker, TOPIC_ROOT, auth=scada)
    source = QueueSource()
    cfg = make_config(
        tmp_path,
        line_bundle,
        broker.port,
        mqtt={"username": "inspector-station-1", "password": USERS["inspector-station-1"]},
    )
    stored = threading.Semaphore(0)
    try:
        with running(Daemon(cfg, source=source, on_result=lambda *_: stored.release())):
            collector.wait_for("status", where=lambda p: p["state"] == "online")
            collector.wait_for("availability", where=lambda p: p == "online")  # allowed
            send(broker.port, "scada", "trigger", {"cell_id": "FROM-SCADA"})
            assert not send(broker.port, None, "trigger", {"cell_id": "ANONYMOUS"})
            send(broker.port, "plc", "trigger", {"cell_id": "FROM-PLC"})
            got = collector.wait_for("result", where=lambda r: r["cell_id"] == "FROM-PLC")
            assert got[0]["verdict"] == "pass"
            forged = {"schema": "inspector.result/1", "cell_id": "FORGED", "verdict": "pass"}
            send(broker.port, "plc", "result", forged)
            send(broker.port, "scada", "status", {"state": "offline"}, retain=True)
            send(broker.port, "plc", "status", {"state": "offline"}, retain=True)
            send(broker.port, "plc", "availability", {"state": "offline"}, retain=True)
            # a marker the station itself publishes after the forgeries: all have been routed
            send(broker.port, "plc", "trigger", {"cell_id": "MARKER"})
            collector.wait_for("result", where=lambda r: r["cell_id"] == "MARKER")
            assert stored.acquire(timeout=1) and stored.acquire(timeout=1)
            assert not stored.acquire(timeout=0)  # FROM-PLC and MARKER only
            cells = [r.get("cell_id") for r in collector.on("result")]
            assert cells == ["FROM-PLC", "MARKER"]
            assert all(p.get("schema") for p in collector.on("status"))
            assert collector.on("availability") == ["online"], "the station's only"
            assert retained_status(broker, scada, "late-scada")["state"] == "online"
            assert not [a for a in collector.on("alarm") if a["kind"] == "foreign_status"]
    finally:
        collector.close()
        broker.stop()


def test_a_forged_retained_offline_is_overwritten_by_the_running_daemon(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    cfg = make_config(tmp_path, line_bundle, broker.port)
    with running(Daemon(cfg, source=QueueSource())):
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        forged = {"schema": "inspector.status/1", "state": "offline", "detail": "stopped"}
        send(broker.port, None, "status", forged, retain=True)
        alarm = collector.wait_for("alarm", where=lambda a: a["kind"] == "foreign_status")[0]
        assert alarm["severity"] == "warning"
        statuses = collector.wait_for("status", 3)  # online, the forgery, online again
        assert [s["state"] for s in statuses[:3]] == ["online", "offline", "online"]
        assert retained_status(broker, None, "late-hmi")["state"] == "online"
    final = collector.wait_for("status", 4)[-1]
    assert (final["state"], final["detail"]) == ("offline", "stopped")  # not "corrected"
