"""The outbox against a real Mosquitto: results and explanations stored while the broker is
away are published in order when it is back, and marked when it acknowledges them."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.comms.outbox import OutboxPublisher
from inspector.store.db import Store
from tests.broker import Broker, Collector
from tests.inspector.comms.test_mqtt import ROOT, link_for


def test_results_stored_while_the_broker_is_away_drain_in_order_and_are_marked(
    tmp_path: Path,
) -> None:
    broker = Broker(tmp_path / "broker")  # not started yet: the broker is away
    store = Store(tmp_path / "data")
    link = link_for(broker)
    outbox = OutboxPublisher(store, link, window=4)
    # the subscriber's durable session exists before the outage, so no result can beat it
    collector = Collector(broker.start(), ROOT)
    broker.stop()
    link.start()
    outbox.start()
    try:
        for i in range(20):
            store.record(
                {"frame_id": f"f{i:02d}", "cell_id": f"c{i}", "verdict": "pass"}, None, None
            )
        outbox.wake()
        assert store.backlog() == 20
        broker.start()
        assert outbox.flush(30), "every result acknowledged"
        results = collector.wait_for("result", 20)
        assert [r["frame_id"] for r in results] == [f"f{i:02d}" for i in range(20)]
        assert store.results.unpublished() == []
    finally:
        collector.close()
        outbox.stop()
        link.stop()
        store.close()
        broker.stop()


def test_explanations_stored_while_the_broker_is_away_drain_in_order_and_are_marked(
    tmp_path: Path,
) -> None:
    broker = Broker(tmp_path / "broker")  # not started yet: the broker is away
    store = Store(tmp_path / "data")
    link = link_for(broker)
    outbox = OutboxPublisher(store, link, window=2, topic="explanation")
    collector = Collector(broker.start(), ROOT)  # its durable session outlives the outage
    broker.stop()
    link.start()
    outbox.start()
    try:
        for i in range(5):
            store.record({"frame_id": f"f{i}", "cell_id": f"c{i}", "verdict": "fail"}, None, None)
        while (job := store.claim_job()) is not None:
            store.finish_job(job.id, f"text of {job.frame_id}", "template")
            outbox.wake()
        assert len(store.explanations.unpublished()) == 5
        broker.start()
        assert outbox.flush(30), "every explanation acknowledged"
        got = collector.wait_for("explanation", 5)
        assert [m["frame_id"] for m in got] == [f"f{i}" for i in range(5)]
        assert {k: got[0][k] for k in ("schema", "line", "station", "cell_id", "text")} == {
            "schema": "inspector.explanation/1",
            "line": "L1",
            "station": "S1",
            "cell_id": "c0",
            "text": "text of f0",
        }
        assert store.explanations.unpublished() == [] and store.backlog() == 5
    finally:
        collector.close()
        outbox.stop()
        link.stop()
        store.close()
        broker.stop()


def test_an_outbox_publishes_results_or_explanations_only() -> None:
    with pytest.raises(ValueError, match="topic must be one of"):
        OutboxPublisher(None, None, topic="alarm")  # type: ignore[arg-type]
