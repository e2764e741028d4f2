"""The fault board: the status follows the faults, and each fault alarms once when it appears
and once when it goes away, never at every check."""

from __future__ import annotations

from inspector.core.alarms import Alarm
from inspector.station.faults import FaultBoard


class FakeLink:
    def __init__(self) -> None:
        self.status: list[tuple[str, str]] = []
        self.alarms: list[tuple[str, str]] = []

    def set_status(self, state: str, detail: str) -> None:
        self.status.append((state, detail))

    def alarm(self, kind: str, severity: str, message: str, **extra: object) -> None:
        self.alarms.append((kind, severity))


def test_a_fault_degrades_the_status_and_alarms_once() -> None:
    link = FakeLink()
    board = FaultBoard(link)
    for _ in range(3):  # checked every heartbeat: one alarm, one status
        board.raise_fault("disk", "0.80 GB free", Alarm.DISK_LOW, "pictures not saved")
    assert "disk" in board
    assert link.alarms == [("disk_low", "critical")]
    assert link.status == [("degraded", "disk: 0.80 GB free")]
    board.raise_fault("source", "unplugged", Alarm.SOURCE_LOST, "unplugged")
    assert link.status[-1] == ("degraded", "disk: 0.80 GB free; source: unplugged")
    for _ in range(2):
        board.clear("source", Alarm.SOURCE_RESTORED, "back")
        board.clear("disk")
    assert "disk" not in board and "source" not in board
    assert link.alarms[-1] == ("source_restored", "info") and len(link.alarms) == 3
    assert link.status[-1] == ("online", "")


def test_a_changed_detail_updates_the_status_without_a_new_alarm() -> None:
    link = FakeLink()
    board = FaultBoard(link)
    assert board.set("backlog", "120 results unpublished") is True
    assert board.set("backlog", "150 results unpublished") is False  # no new alarm is due
    assert link.status[-1] == ("degraded", "backlog: 150 results unpublished")


def test_without_mqtt_alarms_are_logged(caplog) -> None:
    caplog.set_level("WARNING", logger="inspector")
    FaultBoard(None).alarm(Alarm.BACKEND_ERROR, "critical", "CUDA error")
    (record,) = caplog.records
    assert record.getMessage() == "alarm backend_error: CUDA error"
    assert record.levelname == "ERROR" and record.alarm == "backend_error"
