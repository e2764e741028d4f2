"""Has the line's score distribution left the calibration set's? A population stability index.

Calibration stores the image scores of its normal images over fixed bins (the deciles of those
scores, ``models.recipe.ScoreReference``). On the line, the image scores of the last
``window_cells`` inspected cells fall into the same bins, and the population stability index

    PSI = sum over bins of (a - e) * ln(a / e)

(``e``: the calibration share of a bin, ``a``: the window's) says how far they moved. A new foil
lot, a dimmer lamp or a dirty lens shifts the scores of normal cells long before it makes them
fail. The alarm rises when the PSI reaches ``psi_alarm`` and clears only when it falls below
``psi_clear`` (hysteresis, so a PSI near the limit does not flap).

Even an unchanged line has a PSI above 0 from sampling alone: about ``(B - 1) (1/N + 1/M)`` for
``B`` bins, ``N`` window cells and ``M`` calibration images (``noise_floor``). Keep
``psi_alarm`` well above it: calibrate on enough images and use a window of a few hundred cells.

Example:
    >>> from inspector.offline.calibration import reference_from_scores
    >>> ref = reference_from_scores([0.30, 0.32, 0.35, 0.31, 0.33, 0.34, 0.36, 0.29], bins=4)
    >>> check = DriftCheck(ref, window=4, psi_alarm=0.5, psi_clear=0.2)
    >>> [check.observe(s) for s in (0.6, 0.62, 0.61, 0.65)]
    [None, None, None, 'raised']
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Sequence
from typing import Literal

import numpy as np

from inspector.config.drift import DriftConfig
from models.recipe import ScoreReference

log = logging.getLogger("inspector.station.drift")

SMOOTHING = 0.5  # added to every bin's count: an empty bin does not make the PSI infinite


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two histograms over the same bins (counts, smoothed)."""
    e = np.asarray(expected, np.float64) + SMOOTHING
    a = np.asarray(actual, np.float64) + SMOOTHING
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def noise_floor(bins: int, window: int, reference_n: int) -> float:
    """The PSI an unchanged line shows from sampling alone, roughly."""
    return (bins - 1) * (1.0 / window + 1.0 / max(reference_n, 1))


class DriftCheck:
    """The PSI of the last ``window`` scores against ``reference``; thread-safe.

    ``observe`` returns ``"raised"`` when the index first reaches ``psi_alarm``, ``"cleared"``
    when it then falls below ``psi_clear``, else None. Until the window is full it says nothing.
    """

    def __init__(
        self, reference: ScoreReference, window: int, psi_alarm: float, psi_clear: float
    ) -> None:
        self.reference = reference
        self.window, self.psi_alarm, self.psi_clear = window, psi_alarm, psi_clear
        self._edges = np.asarray(reference.edges, np.float64)
        self._bins: collections.deque[int] = collections.deque(maxlen=window)
        self._counts = np.zeros(len(reference.counts), np.int64)
        self._lock = threading.Lock()
        self.drifting = False
        self.last_psi: float | None = None

    @classmethod
    def from_config(cls, reference: ScoreReference | None, cfg: DriftConfig) -> DriftCheck | None:
        """The check the config asks for; None when off or when the bundle has no reference."""
        if not cfg.enabled:
            return None
        if reference is None:
            log.debug("no drift check: the bundle has no score reference (calibrate it)")
            return None
        check = cls(reference, cfg.window_cells, cfg.psi_alarm, cfg.psi_clear)
        floor = check.noise_floor()
        if floor >= cfg.psi_clear:
            log.warning(
                "the drift check is noisy: an unchanged line shows a PSI of about %.2f (%d "
                "calibration images, a window of %d cells), not below drift.psi_clear %g; "
                "calibrate on more images or widen drift.window_cells",
                floor, reference.n, cfg.window_cells, cfg.psi_clear,
            )
        return check

    def noise_floor(self) -> float:
        return noise_floor(len(self.reference.counts), self.window, self.reference.n)

    def observe(self, score: float) -> Literal["raised", "cleared"] | None:
        """Count one cell's image score; the change of state it causes, if any."""
        b = int(np.searchsorted(self._edges, score, side="right"))
        with self._lock:
            if len(self._bins) == self.window:
                self._counts[self._bins[0]] -= 1
            self._bins.append(b)
            self._counts[b] += 1
            if len(self._bins) < self.window:
                return None
            value = psi(self.reference.counts, self._counts)
            self.last_psi = value
            if not self.drifting and value >= self.psi_alarm:
                self.drifting = True
                return "raised"
            if self.drifting and value < self.psi_clear:
                self.drifting = False
                return "cleared"
            return None

    def snapshot(self) -> dict:
        """``{"psi": ..., "drifting": ...}`` for the heartbeat (psi null until the window fills)."""
        with self._lock:
            value = None if self.last_psi is None else round(self.last_psi, 4)
            return {"psi": value, "drifting": self.drifting}


def describe(check: DriftCheck) -> str:
    """One line for the alarm: the index, the limits and what it compares."""
    return (
        f"image scores of the last {check.window} cells against the calibration set's: "
        f"PSI {check.last_psi:.3f} (alarm at {check.psi_alarm:g}, clears below {check.psi_clear:g})"
    )
