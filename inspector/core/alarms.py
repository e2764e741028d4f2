"""Every alarm kind the station raises, in one place.

An alarm is published on the ``alarm`` topic (``inspector.alarm/1``, docs/mqtt.md) with one of
these kinds; docs/operator-guide.md explains each one to the operator, and its test checks the
guide against this list. Code raises an alarm by member, never by a spelled string:

Example:
    >>> Alarm.SOURCE_LOST, f"{Alarm.SOURCE_LOST}", Alarm("source_lost") is Alarm.SOURCE_LOST
    (<Alarm.SOURCE_LOST: 'source_lost'>, 'source_lost', True)
"""

from __future__ import annotations

from enum import StrEnum


class Alarm(StrEnum):
    """The kinds of alarm, in the order the operator guide lists them."""

    # the cells
    REJECT = "reject"
    REJECT_RATE = "reject_rate"
    REJECT_RATE_RESTORED = "reject_rate_restored"
    UNKNOWN_PRODUCT = "unknown_product"
    PRODUCT_LOAD_FAILED = "product_load_failed"
    CELL_ID_MISSING = "cell_id_missing"
    FRAME_MISSING = "frame_missing"
    CELL_ID_AMBIGUOUS = "cell_id_ambiguous"
    FRAME_ERROR = "frame_error"
    # the camera and the triggers
    SOURCE_LOST = "source_lost"
    SOURCE_RESTORED = "source_restored"
    BIT_DEPTH_MISMATCH = "bit_depth_mismatch"
    TRIGGER_FAILED = "trigger_failed"
    TRIGGER_OVERFLOW = "trigger_overflow"
    TRIGGER_REFUSED = "trigger_refused"
    TRIGGER_UNSUPPORTED = "trigger_unsupported"
    BAD_TRIGGER = "bad_trigger"
    # the model, the store and the box
    BACKEND_ERROR = "backend_error"
    STORE_FAILED = "store_failed"
    STORE_RESTORED = "store_restored"
    STORE_DAMAGED = "store_damaged"
    PIPELINE_STALLED = "pipeline_stalled"
    HOUSEKEEPING_FAILED = "housekeeping_failed"
    HOUSEKEEPING_RESTORED = "housekeeping_restored"
    FOREIGN_STATUS = "foreign_status"
    BROKER_BACKLOG = "broker_backlog"
    DISK_LOW = "disk_low"
    SCORE_DRIFT = "score_drift"
    SCORE_DRIFT_CLEARED = "score_drift_cleared"
    BAD_FEEDBACK = "bad_feedback"
    ENGINE_FALLBACK = "engine_fallback"
