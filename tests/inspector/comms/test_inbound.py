"""Inbound MQTT payloads: a technician's feedback is checked before the station records it."""

from __future__ import annotations

import pytest

from inspector.comms.inbound import FeedbackError, parse_feedback


def test_mqtt_feedback_is_checked() -> None:
    ok = parse_feedback(b'{"cell_id": "C-1", "label": "confirmed", "note": "x", "user": "hmi"}')
    assert ok == {"cell_id": "C-1", "label": "confirmed", "note": "x", "user": "hmi"}
    for bad in (b"nope", b"[]", b'{"cell_id": "C-1", "label": "confirmed"}',
                b'{"cell_id": "C-1", "label": "bad", "user": "u"}',
                b'{"cell_id": "<x>", "label": "confirmed", "user": "u"}'):
        with pytest.raises(FeedbackError):
            parse_feedback(bad)
