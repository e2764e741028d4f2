"""The heartbeat's model fields: which model, how fast, what it scores, how far it drifted."""

from __future__ import annotations

import numpy as np
import pytest

from inspector import __version__
from inspector.offline.calibration import reference_from_scores
from inspector.station.drift import DriftCheck
from inspector.station.telemetry import Telemetry


def test_snapshot_before_anything_ran_says_so() -> None:
    snap = Telemetry("tiny-abc", "onnxruntime").snapshot()
    assert snap == {
        "model_id": "tiny-abc", "backend": "onnxruntime", "version": __version__,
        "infer_ms_p50": None, "infer_ms_p99": None, "score_hist": [0] * 10,
        "drift_psi": None, "drifting": False,
    }  # fmt: skip


def test_percentiles_and_histogram_cover_the_recent_window_only() -> None:
    t = Telemetry(window=100)
    for ms in [100.0] * 50 + list(np.linspace(10, 20, 100)):  # the slow start ages out
        t.infer_done(ms)
    for s in [0.99] * 10 + [0.05] * 60 + [0.45] * 39 + [1.0]:
        t.scored(s)
    snap = t.snapshot()
    assert snap["infer_ms_p50"] == pytest.approx(15.0, abs=0.1)
    assert 19.5 < snap["infer_ms_p99"] <= 20.0
    assert snap["score_hist"] == [60, 0, 0, 0, 39, 0, 0, 0, 0, 1]  # 1.0 in the last bin


def test_the_drift_index_comes_from_the_check() -> None:
    check = DriftCheck(reference_from_scores(np.linspace(0.4, 0.5, 50)), 10, 0.5, 0.2)
    t = Telemetry(drift=check)
    for _ in range(10):
        check.observe(0.9)
    snap = t.snapshot()
    assert snap["drifting"] is True and snap["drift_psi"] > 0.5
