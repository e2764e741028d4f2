"""docs/mqtt.md names every topic and payload schema that inspector/comms/mqtt.py uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

from inspector.comms import mqtt
from inspector.core import result

DOC = (Path(__file__).resolve().parents[2] / "docs" / "mqtt.md").read_text(encoding="utf-8")


def test_topics_table_matches_the_code() -> None:
    rows = re.findall(r"^\| `([a-z]+)` \| (?:station|PLC|HMI) ->", DOC, re.MULTILINE)
    assert rows == list(mqtt.TOPICS)


def test_every_schema_is_documented() -> None:
    schemas = [
        v
        for module in (mqtt, result)
        for k, v in vars(module).items()
        if k.endswith("_SCHEMA") and isinstance(v, str)
    ]
    assert len(schemas) >= 5
    for schema in schemas:
        assert f"`{schema}`" in DOC


def test_json_examples_parse() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOC, re.DOTALL)
    assert len(blocks) >= 6
    for block in blocks:
        assert isinstance(json.loads(block), dict)


def test_the_availability_payloads_are_the_documented_plain_strings() -> None:
    found = re.search(r"^## `availability`.*?```text\n(.*?)```", DOC, re.MULTILINE | re.DOTALL)
    assert found and found.group(1).strip().encode() in (mqtt.ONLINE, mqtt.OFFLINE)
    for payload in (mqtt.ONLINE, mqtt.OFFLINE):
        assert f"`{payload.decode()}`" in DOC


def test_every_pairing_flag_has_a_row_and_an_alarm_that_the_code_raises() -> None:
    from inspector.station import pairing
    from tests.docs.test_operator_guide import alarms_in_code

    rows = re.findall(r"^\| `([a-z_]+)` \| .* \| (?:`([a-z_]+)`|none) \|$", DOC, re.MULTILINE)
    flags = [flag for flag, _ in rows if flag in pairing.FLAGS]
    assert flags == list(pairing.FLAGS)
    raised = {alarm for flag, alarm in rows if flag in pairing.FLAGS and alarm}
    assert raised == {"cell_id_missing", "frame_missing", "cell_id_ambiguous"}
    assert raised <= alarms_in_code()
