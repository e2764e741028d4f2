"""Logging for every process of the station (``inspector run``, ``explain``, ``serve``): to
stderr, where journald picks it up, as one JSON object per line or as plain text.

Example:
    >>> setup_logging("json", "INFO")   # doctest: +SKIP
    >>> logging.getLogger("inspector.x").warning("alarm %s", "disk_low")   # doctest: +SKIP
    {"ts": "2026-11-25T09:20:14.647+00:00", "level": "warning", "logger": "inspector.x", ...}
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and any ``extra=`` fields."""

    _SKIP = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self._SKIP})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(fmt: str = "json", level: str = "INFO") -> None:
    """Log to stderr (journald picks it up) as JSON lines or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("inspector")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
