"""What the heartbeat tells about the model at work: which model, how fast, what it scores.

The daemon hands each backend call's duration and each cell's image score to ``Telemetry``;
the heartbeat takes a ``snapshot``: the model id, backend and software version, the median
and 99th percentile of the last calls' milliseconds, a compact histogram of the last cells'
scores (``SCORE_BINS`` counts over equal bins of 0..1, the last bin including 1.0) and the
drift check's index (``inspector.station.drift``).

Example:
    >>> t = Telemetry(window=100)
    >>> for ms in (10.0, 12.0, 11.0): t.infer_done(ms)
    >>> for s in (0.05, 0.31, 0.33, 0.97): t.scored(s)
    >>> snap = t.snapshot()
    >>> snap["infer_ms_p50"], snap["score_hist"]  # doctest: +NORMALIZE_WHITESPACE
    (11.0, [1, 0, 0, 2, 0, 0, 0, 0, 0, 1])
"""

from __future__ import annotations

import collections
import threading

import numpy as np

from inspector import __version__

SCORE_BINS = 10
WINDOW = 1000  # backend calls and cells the snapshot looks back over


class Telemetry:
    """Rolling inference times and image scores; thread-safe."""

    def __init__(
        self,
        model_id: str | None = None,
        backend: str | None = None,
        drift=None,
        window: int = WINDOW,
    ) -> None:
        self.model_id, self.backend, self.drift = model_id, backend, drift
        self._infer_ms: collections.deque[float] = collections.deque(maxlen=window)
        self._scores: collections.deque[float] = collections.deque(maxlen=window)
        self._lock = threading.Lock()

    def infer_done(self, ms: float) -> None:
        """One backend call took ``ms`` milliseconds (a batch: the whole call)."""
        with self._lock:
            self._infer_ms.append(float(ms))

    def scored(self, score: float) -> None:
        """One cell's image score."""
        with self._lock:
            self._scores.append(float(score))

    def snapshot(self) -> dict:
        """The heartbeat's model fields: ``model_id``, ``backend``, ``version``,
        ``infer_ms_p50``/``_p99`` (null before the first call), ``score_hist``, ``drift_psi``
        (null until the drift window is full, or without a drift check) and ``drifting``."""
        with self._lock:
            ms = np.asarray(self._infer_ms, np.float64)
            scores = np.asarray(self._scores, np.float64)
        p50 = p99 = None
        if ms.size:
            p50, p99 = (round(float(v), 2) for v in np.percentile(ms, [50, 99]))
        bins = np.clip((scores * SCORE_BINS).astype(np.int64), 0, SCORE_BINS - 1)
        hist = np.bincount(bins, minlength=SCORE_BINS)
        drift = self.drift.snapshot() if self.drift is not None else {}
        return {
            "model_id": self.model_id,
            "backend": self.backend,
            "version": __version__,
            "infer_ms_p50": p50,
            "infer_ms_p99": p99,
            "score_hist": [int(c) for c in hist],
            "drift_psi": drift.get("psi"),
            "drifting": drift.get("drifting", False),
        }
