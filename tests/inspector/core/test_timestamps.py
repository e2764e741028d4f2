"""Results, alarms, heartbeats and the store write a time one way: UTC, milliseconds, ``Z``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from inspector.core.timestamps import utc_iso


def test_a_time_in_any_zone_is_written_in_utc_to_the_millisecond() -> None:
    at = datetime(2026, 11, 25, 10, 30, 0, 123987, tzinfo=timezone(timedelta(hours=1)))
    assert utc_iso(at) == "2026-11-25T09:30:00.123Z"
    assert utc_iso(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"


def test_without_a_time_it_is_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    text = utc_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) >= before
