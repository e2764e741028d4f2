"""JSON log lines, as every process of the station writes them."""

from __future__ import annotations

import json
import logging

from inspector.core.logs import JsonFormatter


def test_log_lines_are_json_with_the_extra_fields() -> None:
    record = logging.LogRecord(
        "inspector.station.daemon", logging.WARNING, __file__, 1, "alarm %s", ("x",), None
    )
    record.cell_id = "C-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "alarm x" and line["level"] == "warning" and line["cell_id"] == "C-1"
    assert line["ts"].endswith("+00:00")
