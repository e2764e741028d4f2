"""docs/mqtt.md names every topic and payload schema that inspector/mqtt.py uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

from inspector import mqtt

DOC = (Path(__file__).resolve().parents[2] / "docs" / "mqtt.md").read_text(encoding="utf-8")


def test_topics_table_matches_the_code() -> None:
    rows = re.findall(r"^\| `([a-z]+)` \| (?:station|PLC|HMI) ->", DOC, re.MULTILINE)
    assert rows == list(mqtt.TOPICS)


def test_every_schema_is_documented() -> None:
    schemas = [v for k, v in vars(mqtt).items() if k.endswith("_SCHEMA")]
    assert len(schemas) >= 5
    for schema in schemas:
        assert f"`{schema}`" in DOC


def test_json_examples_parse() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOC, re.DOTALL)
    assert len(blocks) >= 6
    for block in blocks:
        assert isinstance(json.loads(block), dict)
