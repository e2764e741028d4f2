"""JSON objects out of inbound MQTT payloads (triggers, feedback), with one set of guards."""

from __future__ import annotations

import json


def json_object(payload: bytes, error: type[ValueError], expected: str) -> dict:
    """The JSON object in ``payload`` (UTF-8), or ``error`` saying what is wrong.

    Example:
        >>> json_object(b'{"cell_id": "C-1"}', ValueError, "cell_id")
        {'cell_id': 'C-1'}
    """
    try:
        data = json.loads(payload.decode("utf-8"))
    # ValueError also covers integers of over 4300 digits; RecursionError, deep nesting
    except (ValueError, RecursionError) as exc:
        raise error(f"not JSON in UTF-8: {exc}"[:300]) from None
    if not isinstance(data, dict):
        raise error(f"payload must be a JSON object with {expected}")
    return data
