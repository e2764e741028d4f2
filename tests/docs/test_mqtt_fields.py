"""Every field the station publishes is the field docs/mqtt.md shows: payloads captured from a
real daemon and explainer on a real broker, compared key by key with the document's examples
and its field table (a consumer codes against the document)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inspector.core.result import JSON_SCHEMA
from inspector.sources.base import Frame
from inspector.station.daemon import Daemon
from inspector.store.db import Store
from tests.broker import broker  # noqa: F401  (fixture)
from tests.inspector.daemon_helpers import (
    QueueSource,
    bad_image,
    collector,  # noqa: F401  (fixture)
    explained_once,
    good_image,
    line_bundle,  # noqa: F401  (fixture)
    make_config,
    running,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "mqtt.md").read_text(encoding="utf-8")
PUBLISHED = ("result", "alarm", "status", "heartbeat", "explanation")
LATE = timedelta(seconds=10)


def section(topic: str) -> str:
    """The text of the document's ``## `topic` ...`` section."""
    found = re.search(rf"^## `{topic}`.*?$(.*?)(?=^## |\Z)", DOC, re.MULTILINE | re.DOTALL)
    assert found, f"docs/mqtt.md has no section for {topic}"
    return found.group(1)


def example(topic: str) -> dict:
    """The section's first JSON example."""
    block = re.search(r"```json\n(.*?)```", section(topic), re.DOTALL)
    assert block, f"no JSON example for {topic}"
    return json.loads(block.group(1))


def table_fields(topic: str) -> set[str]:
    """Fields named in the first column of the section's field table."""
    rows = re.findall(r"^\| (`[^|]+) \|", section(topic), re.MULTILINE)
    return {name for row in rows for name in re.findall(r"`([a-z_]+)`", row)}


@pytest.fixture()
def published(tmp_path: Path, broker, collector, line_bundle) -> dict[str, list[dict]]:  # noqa: F811
    """What the daemon and the explainer publish for a good, a defective and a broken frame."""
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, broker.port)
    with running(Daemon(cfg, source=source)):
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        source.push(Frame("GOOD-1", good_image(6)))
        source.push(Frame("BAD-1", bad_image(6), product="pouch"))
        # a corrupt file is given up some seconds after it was written: ts is when it was
        source.push(Frame("ERR-1", None, error="corrupt file", timestamp=datetime.now(UTC) - LATE))
        collector.wait_for("result", 3)
        collector.wait_for("alarm", where=lambda a: a["kind"] == "reject")
        collector.wait_for("heartbeat", where=lambda h: h["frames"] >= 3)
    store = Store(cfg.data_dir)
    try:
        with explained_once(cfg, store):
            collector.wait_for("explanation")
    finally:
        store.close()
    return {topic: collector.on(topic) for topic in PUBLISHED}


def test_every_published_field_is_the_documented_one(published: dict[str, list[dict]]) -> None:
    results = {r["verdict"]: r for r in published["result"]}
    assert set(results) == {"pass", "fail", "error"}
    doc_result = example("result")

    # the result: the example shows a reject; the table names every field of every verdict
    fail = results["fail"]
    assert set(fail) == set(doc_result)
    assert set(fail["latency_ms"]) == set(doc_result["latency_ms"])
    assert set(fail["regions"][0]) == set(doc_result["regions"][0])
    assert set(fail["thresholds"]) == set(doc_result["thresholds"])
    every_key = set().union(*(set(r) for r in results.values())) - {"schema"}
    assert every_key == table_fields("result")
    latency_row = re.search(r"^\| `latency_ms` \|(.*)$", section("result"), re.MULTILINE)
    for verdict, r in results.items():
        for key in r["latency_ms"]:
            assert f"`{key}`" in latency_row.group(1), (verdict, key)
    assert "source" not in fail["source"]  # the source's name is its kind, said once
    for r in results.values():  # frame_id's time is the frame's ts, as the table says
        stamp = re.search(r"-(\d{8}T\d{9})\d{3}Z-", r["frame_id"]).group(1)
        assert stamp == re.sub(r"[-:.Z]", "", r["ts"]), (r["frame_id"], r["ts"])

    # alarm (the example is a reject), status, heartbeat, explanation: the same keys
    reject = next(a for a in published["alarm"] if a["kind"] == "reject")
    assert set(reject) == set(example("alarm"))
    for topic in ("status", "heartbeat", "explanation"):
        assert set(published[topic][-1]) == set(example(topic)), topic

    # every payload names its station
    for topic in PUBLISHED:
        for payload in published[topic]:
            assert (payload["line"], payload["station"]) == ("L1", "S1"), topic


def test_the_result_table_documents_no_field_twice() -> None:
    rows = re.findall(r"^\| (`[^|]+) \|", section("result"), re.MULTILINE)
    names = [name for row in rows for name in re.findall(r"`([a-z_]+)`", row)]
    assert len(names) == len(set(names))


def test_the_result_table_and_example_are_the_result_schema() -> None:
    properties = JSON_SCHEMA["properties"]
    assert table_fields("result") == set(properties) - {"schema"}
    doc_result = example("result")  # a reject: every field but error
    assert set(doc_result) == set(properties) - {"error"}
    assert set(doc_result["regions"][0]) == set(properties["regions"]["items"]["properties"])
    assert set(doc_result["latency_ms"]) == set(properties["latency_ms"]["properties"])
    assert doc_result["schema"] == properties["schema"]["const"]
