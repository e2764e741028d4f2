"""Inbound messages checked before the station acts on them: JSON objects out of MQTT payloads
(triggers, feedback), with one set of guards, and a technician's label of a reject (MQTT
``feedback`` topic, the page's form and API)."""

from __future__ import annotations

import json
import re

from inspector.sources.base import CELL_ID
from inspector.store.feedback import LABELS

MAX_NOTE_CHARS = 1000
USER = re.compile(r"^[\w.@:+-]{1,64}$")  # a user name as the broker or a login gives it


class FeedbackError(ValueError):
    """Feedback that cannot be recorded; the message says why."""


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


def check_feedback(label: object, note: object) -> tuple[str, str]:
    """``(label, note)`` when they are acceptable, else ``FeedbackError``."""
    if label not in LABELS:
        raise FeedbackError(f"label must be one of {', '.join(LABELS)}, got {label!r}"[:300])
    note = "" if note is None else note
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        raise FeedbackError(f"note must be text of at most {MAX_NOTE_CHARS} characters")
    return str(label), note.strip()


def parse_feedback(payload: bytes) -> dict:
    """``{cell_id, label, note, user}`` of an MQTT ``feedback`` message, or ``FeedbackError``.

    Example:
        >>> parse_feedback(b'{"cell_id": "C-1", "label": "false_reject", "user": "hmi-2"}')
        {'cell_id': 'C-1', 'label': 'false_reject', 'note': '', 'user': 'hmi-2'}
    """
    data = json_object(payload, FeedbackError, "cell_id, label and user")
    cell_id, user = data.get("cell_id"), data.get("user")
    if not isinstance(cell_id, str) or not CELL_ID.fullmatch(cell_id):
        raise FeedbackError(f"cell_id must be a cell id, got {cell_id!r}"[:300])
    if not isinstance(user, str) or not USER.fullmatch(user):
        raise FeedbackError(
            f"user must name who gave the feedback (1-64 letters, digits or . @ : + - _), "
            f"got {user!r}"[:300]
        )
    label, note = check_feedback(data.get("label"), data.get("note"))
    return {"cell_id": cell_id, "label": label, "note": note, "user": user}
