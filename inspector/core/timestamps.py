"""The one text form of a point in time that results, alarms and the store carry.

Example:
    >>> from datetime import UTC, datetime
    >>> utc_iso(datetime(2026, 11, 25, 9, 30, 0, 123456, tzinfo=UTC))
    '2026-11-25T09:30:00.123Z'
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(at: datetime | None = None) -> str:
    """ISO-8601 UTC time with milliseconds and a ``Z`` (``at``, else now).

    An aware ``at`` in another zone is converted to UTC; milliseconds are cut, not rounded.
    """
    moment = datetime.now(UTC) if at is None else at.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
