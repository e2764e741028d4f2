"""Every alarm the code can raise is explained in the operator guide, and nothing else is."""

from __future__ import annotations

import re
from pathlib import Path

from inspector.core.alarms import Alarm

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "operator-guide.md"
TABLE_ROW = re.compile(r"^\| `([a-z_]+)` \| (?:info|warning|critical)", re.MULTILINE)
RAISED = re.compile(r"\bAlarm\.([A-Z_]+)\b")
SPELLED = re.compile(r"\balarm\(\s*\"[a-z_]+\"")  # an alarm raised by a string, not by kind


def code_files() -> list[Path]:
    return sorted((REPO / "inspector").rglob("*.py"))


def alarms_in_code() -> set[str]:
    """The alarm kinds the station can raise: its list, ``inspector.core.alarms.Alarm``."""
    return {kind.value for kind in Alarm}


def test_every_alarm_kind_is_in_the_operator_guide() -> None:
    documented = set(TABLE_ROW.findall(GUIDE.read_text(encoding="utf-8")))
    in_code = alarms_in_code()
    assert {"reject", "source_lost", "disk_low", "engine_fallback"} <= in_code
    assert in_code - documented == set(), "alarms without an entry in docs/operator-guide.md"
    assert documented - in_code == set(), "documented alarms the code never raises"


def test_every_listed_alarm_is_raised_and_none_is_spelled_out() -> None:
    raised: set[str] = set()
    for path in code_files():
        text = path.read_text(encoding="utf-8")
        raised |= set(RAISED.findall(text))
        assert not SPELLED.search(text), f"{path}: raise alarms by inspector.core.alarms.Alarm"
    assert raised == {kind.name for kind in Alarm}, "listed alarms the code never raises"
