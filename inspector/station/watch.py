"""Watching the stream of results: the reject alarms (``alarms.reject``) and the drift of the
image scores (``drift``, the pure ``DriftCheck`` of ``inspector.station.drift``). Each watch
sees every stored result once, in order, and alarms on a change, not at every cell.

Example:
    >>> rejects = RejectWatch(cfg.alarms, board)                          # doctest: +SKIP
    >>> rejects.seen(result)     # each stored pass or fail, in order     # doctest: +SKIP
"""

from __future__ import annotations

import collections

from inspector.config.station import AlarmsConfig
from inspector.core.alarms import Alarm
from inspector.core.result import Result
from inspector.station.drift import DriftCheck, describe
from inspector.station.faults import FaultBoard
from inspector.station.telemetry import Telemetry


class RejectWatch:
    """The reject alarms ``alarms.reject`` asks for: none, one per reject, or one when the
    share of rejects among the last ``reject_window`` cells reaches ``reject_rate`` (and one
    when it falls back below)."""

    def __init__(self, policy: AlarmsConfig, board: FaultBoard) -> None:
        self.policy = policy
        self.board = board
        # the latest inspected cells, True for a reject (alarms.reject: rate)
        self._recent: collections.deque[bool] = collections.deque(maxlen=policy.reject_window)
        self._rate_high = False

    def seen(self, result: Result) -> None:
        """One inspected cell (``pass`` or ``fail``)."""
        failed = result.verdict == "fail"
        if self.policy.reject == "every" and failed:
            regions = result.regions or []
            where = ", ".join(r.position for r in regions)
            self.board.alarm(
                Alarm.REJECT,
                "warning",
                f"cell {result.cell_id} rejected: {len(regions)} region(s), {where}",
                cell_id=result.cell_id,
                frame_id=result.frame_id,
                image_score=result.image_score,
            )
        if self.policy.reject == "rate":
            self._rate(failed)

    def _rate(self, failed: bool) -> None:
        policy = self.policy
        self._recent.append(failed)
        if len(self._recent) < policy.reject_window:
            return
        rate = sum(self._recent) / len(self._recent)
        text = f"{rate:.1%} of the last {len(self._recent)} cells rejected"
        if rate >= policy.reject_rate and not self._rate_high:
            self._rate_high = True
            self.board.alarm(
                Alarm.REJECT_RATE,
                "warning",
                f"{text} (alarms.reject_rate {policy.reject_rate:.1%})",
                rate=round(rate, 4),
                window=len(self._recent),
            )
        elif rate < policy.reject_rate and self._rate_high:
            self._rate_high = False
            self.board.alarm(
                Alarm.REJECT_RATE_RESTORED,
                "info",
                f"{text}: back below alarms.reject_rate",
                rate=round(rate, 4),
                window=len(self._recent),
            )


class ScoreWatch:
    """Feeds each scored cell to the heartbeat's telemetry and the drift check; the drift
    sets the ``drift`` fault (status degraded) with ``score_drift``, and clears it with
    ``score_drift_cleared``.

    Args:
        drift: the drift check (None: the bundle has no calibration reference, or it is off).
        telemetry: the heartbeat's telemetry.
        model_id: the default product's model: the drift reference is its calibration, so
            other products' scores would read as drift.
        board: where the fault and the alarms go.
    """

    def __init__(
        self,
        drift: DriftCheck | None,
        telemetry: Telemetry,
        model_id: str | None,
        board: FaultBoard,
    ) -> None:
        self.drift = drift
        self.telemetry = telemetry
        self.model_id = model_id
        self.board = board

    def seen(self, result: Result) -> None:
        """One stored result; only a scored one counts."""
        score = result.image_score
        if score is None:
            return
        self.telemetry.scored(score)
        drift = self.drift
        own = result.model_id == self.model_id
        change = drift.observe(score) if drift is not None and own else None
        if change == "raised":
            self.board.set("drift", f"PSI {drift.last_psi:.3f}")
            self.board.alarm(
                Alarm.SCORE_DRIFT, "warning", describe(drift), psi=round(drift.last_psi, 4)
            )
        elif change == "cleared":
            self.board.set("drift", None)
            self.board.alarm(
                Alarm.SCORE_DRIFT_CLEARED, "info", describe(drift), psi=round(drift.last_psi, 4)
            )
