"""Hostile MQTT trigger payloads against a running daemon, pylon camera and a real Mosquitto.

Whatever arrives on the trigger topic, the daemon keeps answering valid triggers, gives each
valid one exactly one result, alarms each bad one, and writes nothing outside its data dir.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYLON_CAMEMU", "2")  # read by pypylon when it is first imported

import itertools  # noqa: E402
import json  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from inspector.comms.mqtt import TriggerError, parse_trigger  # noqa: E402
from inspector.station.daemon import Daemon  # noqa: E402
from tests.broker import Broker, Collector  # noqa: E402
from tests.inspector.daemon_helpers import (  # noqa: E402
    TOPIC_ROOT,
    bad_image,
    make_config,
    write_images,
)

NASTY = [
    "..", "../..", "a/../../b", "..\\..\\x", "C\x00D", "\x00", "C/1", "/etc/passwd", "C1\n",
    "C1\r\nX", "\ud800", "C1\u202e", "A" * 129, "CELL-1 ", " CELL-1", "~root", "$(id)", "*", "#",
    "+", "C1/+/#", "%2e%2e%2f",
]  # fmt: skip
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
# cell ids the daemon accepts, with the dots and colons a path trick would need
VALID_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,20}", fullmatch=True)
CELL = st.one_of(st.sampled_from(NASTY), st.text(max_size=200), VALID_ID, JSON_VALUE)
OBJECT = st.fixed_dictionaries(
    {"cell_id": CELL}, optional={"product": CELL, "extra": JSON_VALUE}
).map(lambda d: json.dumps(d).encode())
PAYLOAD = st.one_of(
    OBJECT,
    JSON_VALUE.map(lambda v: json.dumps(v).encode()),  # wrong top-level types
    st.binary(max_size=300),  # invalid UTF-8, NUL bytes, not JSON
    OBJECT.map(lambda b: b[:-1] + b"\xff}"),  # JSON spoiled by one invalid byte
)
_sentinels = itertools.count()


class StationCollector(Collector):
    """The station's own messages only: the hostile triggers would trip the test's decoder."""

    def _on_message(self, client, userdata, msg) -> None:
        if not msg.topic.endswith("/trigger"):
            super()._on_message(client, userdata, msg)


def accepted(payload: bytes) -> str | None:
    """The cell id the daemon should inspect for ``payload``, None when it must refuse it."""
    try:
        return parse_trigger(payload)[0]
    except TriggerError:
        return None


def tree(root: Path, skip: set[Path]) -> dict[str, tuple[int, int]]:
    """Every file and folder below ``root`` (except ``skip``) with its size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        # hypothesis keeps its example database in the working directory
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip and d != ".hypothesis"]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st_ = p.lstat()
            out[str(p.relative_to(root))] = (st_.st_size, st_.st_mtime_ns)
    return out


@dataclass
class Station:
    daemon: Daemon
    collector: Collector
    sender: mqtt.Client
    root: Path  # the whole pytest tmp tree
    data_dir: Path
    skip: set[Path]
    before: dict[str, tuple[int, int]]

    def send(self, payload: bytes) -> None:
        self.sender.publish(TOPIC_ROOT + "trigger", payload, qos=1).wait_for_publish(10)

    def bad_trigger_alarms(self) -> int:
        return len([a for a in self.collector.on("alarm") if a["kind"] == "bad_trigger"])


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory, line_bundle: Path) -> Iterator[Station]:
    """A running daemon (emulated pylon camera that sees a reject every time, so pictures are
    written), a collector and a trigger sender, with the working directory moved into the tmp
    tree so that a stray relative write would show up there too."""
    work = tmp_path_factory.mktemp("station")
    broker_dir = tmp_path_factory.mktemp("broker")
    camera = write_images(work / "camera", [bad_image(5)])
    source = {"kind": "pylon", "serial": "0815-0000", "emulation_images": str(camera)}
    cfg = make_config(work, line_bundle, None, source)
    broker = Broker(broker_dir).start()
    cfg.mqtt.port, cfg.mqtt.enabled = broker.port, True
    cwd = Path.cwd()
    os.chdir(work)
    collector = StationCollector(broker, TOPIC_ROOT)
    sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plc")
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    daemon = Daemon(cfg)
    daemon.start()
    try:
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        root = tmp_path_factory.getbasetemp()
        skip = {broker_dir, cfg.data_dir}
        yield Station(daemon, collector, sender, root, cfg.data_dir, skip, tree(root, skip))
    finally:
        daemon.stop()
        daemon.wait_stopped()
        sender.loop_stop()
        sender.disconnect()
        collector.close()
        broker.stop()
        os.chdir(cwd)


def test_accepted_cell_ids_are_exactly_the_documented_characters() -> None:
    for nasty in NASTY:
        assert accepted(json.dumps({"cell_id": nasty}).encode()) is None, repr(nasty)
    assert accepted(b'{"cell_id": "2026.11:A-7_x"}') == "2026.11:A-7_x"


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(payloads=st.lists(PAYLOAD, min_size=1, max_size=4))
@example(payloads=[b"[" * 100_000])  # nesting deeper than the JSON decoder's recursion
@example(payloads=[b'{"cell_id": ' + b"9" * 5000 + b"}"])  # over 4300 digits: ValueError
@example(payloads=[b'{"cell_id": "' + b"A" * 4_000_000 + b'"}'])  # 4 MB string
@example(payloads=[b'{"cell_id": "a/../../../escaped", "product": "../../x"}', b"\x00" * 64])
@example(payloads=[b'{"cell_id": "C1\\n"}', b'{"cell_id": "..:..", "product": "p\\u0000"}'])
@example(payloads=[b'{"cell_id": "a..b"}', b'{"cell_id": "0", "product": "pouch"}'])
def test_hostile_triggers_never_stop_the_station_or_escape_the_data_dir(
    station: Station, payloads: list[bytes]
) -> None:
    results_before = len(station.collector.on("result"))
    alarms_before = station.bad_trigger_alarms()
    expected = [accepted(p) for p in payloads]
    for payload in payloads:
        station.send(payload)
    sentinel = f"SENTINEL-{next(_sentinels)}"
    station.send(json.dumps({"cell_id": sentinel}).encode())
    station.collector.wait_for("result", where=lambda r: r["cell_id"] == sentinel, timeout=60)

    got = [r["cell_id"] for r in station.collector.on("result")[results_before:]]
    assert got == [c for c in expected if c is not None] + [sentinel], "one result per valid one"
    refused = expected.count(None)
    station.collector.wait_for(
        "alarm", alarms_before + refused, where=lambda a: a["kind"] == "bad_trigger", timeout=10
    )
    assert station.daemon.link.connected.is_set() and station.daemon._threads_alive()
    assert tree(station.root, station.skip) == station.before, "nothing written outside data/"
    data = station.data_dir.resolve()
    for p in station.data_dir.rglob("*"):
        assert p.resolve().is_relative_to(data)  # no link leads out
        assert "\x00" not in p.name and ".." not in p.relative_to(station.data_dir).parts
