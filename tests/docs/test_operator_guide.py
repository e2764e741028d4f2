"""Every alarm the code can raise is explained in the operator guide, and nothing else is."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "operator-guide.md"
ALARM_CALL = re.compile(r"\balarm\(\s*\"([a-z_]+)\"")
# Daemon._raise_fault(name, detail, kind, ...): the alarm kind is its third argument
FAULT_CALL = re.compile(r"\b_raise_fault\(\s*\"[a-z_]+\",\s*\w+,\s*\"([a-z_]+)\"")
TABLE_ROW = re.compile(r"^\| `([a-z_]+)` \| (?:info|warning|critical)", re.MULTILINE)


def alarms_in_code() -> set[str]:
    kinds: set[str] = set()
    for path in (REPO / "inspector").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        kinds |= set(ALARM_CALL.findall(text)) | set(FAULT_CALL.findall(text))
    return kinds


def test_every_alarm_kind_is_in_the_operator_guide() -> None:
    documented = set(TABLE_ROW.findall(GUIDE.read_text(encoding="utf-8")))
    in_code = alarms_in_code()
    assert {"reject", "source_lost", "disk_low", "engine_fallback"} <= in_code  # scan finds them
    assert in_code - documented == set(), "alarms without an entry in docs/operator-guide.md"
    assert documented - in_code == set(), "documented alarms the code never raises"
