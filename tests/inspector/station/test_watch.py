"""The watches over the stream of results: reject alarms by policy, and the drift fault."""

from __future__ import annotations

from inspector.config.station import AlarmsConfig
from inspector.core.alarms import Alarm
from inspector.core.result import Region, Result
from inspector.station.telemetry import Telemetry
from inspector.station.watch import RejectWatch, ScoreWatch


class FakeBoard:
    def __init__(self) -> None:
        self.alarms: list[tuple[str, dict]] = []
        self.faults: dict[str, str | None] = {}

    def alarm(self, kind: Alarm, severity: str, message: str, **extra: object) -> None:
        self.alarms.append((kind, extra))

    def set(self, name: str, detail: str | None) -> bool:
        self.faults[name] = detail
        return True


def result(verdict: str, score: float = 0.3, model_id: str = "m-1") -> Result:
    region = Region((1, 2, 3, 4), 12.0, 0.9, 0.7, (2.5, 4.0), "upper left")
    return Result(
        line="L1",
        station="S1",
        cell_id="C-1",
        frame_id="S1-1",
        ts="2026-11-25T09:20:14.647Z",
        verdict=verdict,
        model_id=model_id,
        image_score=score,
        regions=[region] if verdict == "fail" else [],
    )


def test_every_reject_alarms_with_its_regions() -> None:
    board = FakeBoard()
    watch = RejectWatch(AlarmsConfig(reject="every"), board)
    watch.seen(result("pass"))
    watch.seen(result("fail", 0.912345))
    assert board.alarms == [
        (Alarm.REJECT, {"cell_id": "C-1", "frame_id": "S1-1", "image_score": 0.9123})
    ]


def test_the_reject_rate_alarms_once_up_and_once_down() -> None:
    board = FakeBoard()
    watch = RejectWatch(AlarmsConfig(reject="rate", reject_rate=0.5, reject_window=2), board)
    for verdict in ("fail", "fail", "fail", "pass", "pass", "pass"):
        watch.seen(result(verdict))
    kinds = [kind for kind, _ in board.alarms]
    assert kinds == [Alarm.REJECT_RATE, Alarm.REJECT_RATE_RESTORED]
    assert board.alarms[0][1] == {"rate": 1.0, "window": 2}


class FakeDrift:
    last_psi = 0.3012345
    window, psi_alarm, psi_clear = 300, 0.25, 0.15

    def __init__(self) -> None:
        self.seen: list[float] = []

    def observe(self, score: float) -> str | None:
        self.seen.append(score)
        return {1: "raised", 3: "cleared"}.get(len(self.seen))


def test_only_the_default_products_scores_feed_the_drift_check() -> None:
    board, drift, telemetry = FakeBoard(), FakeDrift(), Telemetry()
    watch = ScoreWatch(drift, telemetry, "m-1", board)
    watch.seen(result("pass", 0.2))
    watch.seen(result("pass", 0.3, model_id="other-product"))
    watch.seen(Result(line="L1", station="S1", cell_id="C", frame_id="F", ts="", verdict="error"))
    assert drift.seen == [0.2] and board.faults == {"drift": "PSI 0.301"}
    assert board.alarms == [(Alarm.SCORE_DRIFT, {"psi": 0.3012})]
    watch.seen(result("pass", 0.4))
    watch.seen(result("pass", 0.4))
    assert board.faults == {"drift": None} and board.alarms[-1][0] == Alarm.SCORE_DRIFT_CLEARED
    assert sum(telemetry.snapshot()["score_hist"]) == 4
