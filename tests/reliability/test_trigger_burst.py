"""A burst of 3,000 triggers from the PLC: every trigger ends in exactly one result.

Emulated pylon camera in software-trigger mode, the tiny bundle, a real Mosquitto with the
queue limits of the example broker configuration (``systemd/mosquitto.example.conf``). The
camera and the model cannot keep up, so most triggers overflow the daemon's trigger queue;
each of those must still get its ``error`` result, and none may vanish in the broker.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYLON_CAMEMU", "2")  # read by pypylon when it is first imported

import collections  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402
import pytest  # noqa: E402

from inspector.station.daemon import Daemon  # noqa: E402
from tests.broker import MOSQUITTO, Broker, Collector  # noqa: E402
from tests.inspector.daemon_helpers import (  # noqa: E402
    TOPIC_ROOT,
    good_image,
    make_config,
    running,
    write_images,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONF = REPO / "systemd" / "mosquitto.example.conf"
LIMITS = ("max_queued_messages", "max_queued_bytes", "max_inflight_messages")
BURST = 3000


def example_limits() -> str:
    """The queue and in-flight lines of the example broker configuration."""
    lines = EXAMPLE_CONF.read_text().splitlines()
    picked = [ln for ln in lines if ln.split(" ")[0] in LIMITS]
    assert len(picked) == len(LIMITS), f"{EXAMPLE_CONF} must set {LIMITS}"
    return "\n".join(picked) + "\n"


def test_example_broker_config_keeps_a_burst_of_triggers() -> None:
    queued = re.search(r"^max_queued_messages (\d+)$", EXAMPLE_CONF.read_text(), re.M)
    assert queued and int(queued.group(1)) >= 10 * BURST  # mosquitto's default is 1000


@pytest.mark.slow
def test_a_burst_of_3000_triggers_gives_exactly_3000_results(
    tmp_path: Path, line_bundle: Path
) -> None:
    if not Path(MOSQUITTO).exists():
        pytest.skip("the mosquitto binary is missing (make test installs it)")
    broker = Broker(tmp_path / "broker", settings=example_limits()).start()
    camera = write_images(tmp_path / "camera", [good_image(5)])
    source = {"kind": "pylon", "serial": "0815-0000", "emulation_images": str(camera)}
    # a short trigger queue: most of the burst overflows, and the test takes a minute
    cfg = make_config(tmp_path, line_bundle, broker.port, source, pipeline={"trigger_queue": 50})
    collector = Collector(broker, TOPIC_ROOT)
    plc = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plc")
    plc.max_inflight_messages_set(BURST)  # as fast as the broker takes them
    plc.connect("127.0.0.1", broker.port)
    plc.loop_start()
    cells = [f"BURST-{i:05d}" for i in range(BURST)]
    try:
        with running(Daemon(cfg)):
            collector.wait_for("status", where=lambda p: p["state"] == "online")
            sent = [
                plc.publish(TOPIC_ROOT + "trigger", json.dumps({"cell_id": c}), qos=1)
                for c in cells
            ]
            for info in sent:
                info.wait_for_publish(60)
            collector.wait_for(
                "result", BURST, timeout=300, where=lambda p: p["cell_id"].startswith("BURST-")
            )
        results = [r for r in collector.on("result") if r["cell_id"].startswith("BURST-")]
        per_cell = collections.Counter(r["cell_id"] for r in results)
        assert set(per_cell) == set(cells)
        assert set(per_cell.values()) == {1}, [c for c, n in per_cell.items() if n > 1][:5]
        verdicts = collections.Counter(r["verdict"] for r in results)
        assert set(verdicts) <= {"pass", "fail", "error"}
        overflowed = [r for r in results if r.get("error") == "trigger queue full"]
        alarms = [a for a in collector.on("alarm") if a["kind"] == "trigger_overflow"]
        assert len(alarms) == len(overflowed)
        print(f"{BURST} triggers: {dict(verdicts)}, {len(overflowed)} overflowed")
        log = (tmp_path / "broker" / "mosquitto.log").read_text()
        assert "dropped" not in log
    finally:
        plc.loop_stop()
        plc.disconnect()
        collector.close()
        broker.stop()
