"""The drift check: PSI over the calibration set's fixed bins, raised and cleared with
hysteresis; on a running daemon, a lamp that dims by 20 % raises `score_drift` within the
window and it clears once the light is back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.offline.calibration import calibrate, reference_from_scores
from inspector.runtime.predictor import Predictor
from inspector.sources.base import Frame
from inspector.station.daemon import Daemon
from inspector.station.drift import DriftCheck, DriftConfig, noise_floor, psi
from models.recipe import load_recipe, model_id
from tests.conftest import textured
from tests.inspector.daemon_helpers import QueueSource, make_config, running

WINDOW = 60
N_CALIBRATION = 60


def test_reference_bins_are_the_calibration_deciles() -> None:
    scores = np.linspace(0.3, 0.5, 100)
    ref = reference_from_scores(scores)
    assert len(ref.edges) == 9 and ref.counts == [10] * 10 and ref.n == 100
    tied = reference_from_scores([0.4] * 50 + [0.6] * 50)  # ties merge bins: none is empty
    assert len(tied.counts) == len(tied.edges) + 1 and sum(tied.counts) == 100


def test_psi_is_zero_for_the_same_shape_and_grows_with_the_shift() -> None:
    assert psi([10] * 10, [20] * 10) == pytest.approx(0.0)
    small = psi([10] * 10, [12, 12, 12, 12, 12, 8, 8, 8, 8, 8])
    large = psi([10] * 10, [0] * 9 + [100])
    assert 0 < small < 0.1 < 1.0 < large


def test_alarm_rises_once_and_clears_below_the_lower_limit() -> None:
    ref = reference_from_scores(np.linspace(0.40, 0.48, 200))
    check = DriftCheck(ref, window=50, psi_alarm=0.8, psi_clear=0.4)  # floor 0.23
    normal = np.random.default_rng(0).uniform(0.40, 0.48, 400)
    changes = [check.observe(s) for s in normal[:100]]
    assert changes == [None] * 100 and not check.drifting  # an unchanged line stays quiet
    changes = [check.observe(s + 0.06) for s in normal[100:200]]
    assert changes.count("raised") == 1 and changes.index("raised") < 50
    changes = [check.observe(s) for s in normal[200:]]
    assert changes.count("cleared") == 1 and changes.index("cleared") < 50
    assert check.snapshot() == {"psi": pytest.approx(check.last_psi, abs=1e-4), "drifting": False}


def test_config_wants_the_clear_limit_below_the_alarm() -> None:
    with pytest.raises(ValueError, match="psi_clear must be below psi_alarm"):
        DriftConfig(psi_alarm=0.2, psi_clear=0.3)
    assert noise_floor(10, 300, 100) == pytest.approx(0.12)
    assert DriftCheck.from_config(None, DriftConfig()) is None  # uncalibrated: no check


@pytest.fixture(scope="module")
def calibrated_bundle(
    patchcore_line_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The line bundle scored as PatchCore does (a dimmer lamp lifts every score), calibrated
    on normal textures: thresholds and the drift reference."""
    root = tmp_path_factory.mktemp("drift")
    bundle = root / "bundle"
    shutil.copytree(patchcore_line_bundle, bundle)
    paths = []
    for seed in range(100, 100 + N_CALIBRATION):
        paths.append(root / f"normal{seed}.png")
        cv2.imwrite(str(paths[-1]), textured(301, 457, seed=seed))
    predictor = Predictor(bundle, "torch")
    try:
        calibrate(predictor, paths, progress=False)
    finally:
        predictor.close()
    assert load_recipe(bundle).score_reference.n == N_CALIBRATION
    # calibration.json names the calibrated bundle's id (thresholds are part of it)
    assert json.loads((bundle / "calibration.json").read_text())["model_id"] == model_id(bundle)
    return bundle


def dimmed(seed: int, factor: float = 0.8) -> np.ndarray:
    """A normal cell under a lamp at ``factor`` of its light."""
    return (textured(301, 457, seed=seed).astype(np.float32) * factor).astype(np.uint8)


def test_a_dimmer_lamp_raises_score_drift_within_the_window_and_it_clears(
    tmp_path: Path, broker, collector, calibrated_bundle: Path
) -> None:
    drift = {"window_cells": WINDOW, "psi_alarm": 1.0, "psi_clear": 0.6}
    cfg = make_config(tmp_path, calibrated_bundle, broker.port, drift=drift)
    phases = [("normal", 1.0)] * WINDOW + [("dim", 0.8)] * WINDOW + [("back", 1.0)] * WINDOW
    states: list[tuple[str, bool]] = []
    source = QueueSource()
    daemon = Daemon(
        cfg, source=source, on_result=lambda *_: states.append((phase, daemon.drift.drifting))
    )
    with running(daemon):
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        for i, (phase, factor) in enumerate(phases):  # noqa: B007 (read by on_result)
            source.push(Frame(f"C-{i:04d}", dimmed(1000 + i, factor)))
            # one at a time: each result is counted under the phase its frame belongs to
            while len(states) <= i:
                daemon.stopped.wait(0.01)
        raised = collector.wait_for("alarm", where=lambda a: a["kind"] == "score_drift")
        cleared = collector.wait_for("alarm", where=lambda a: a["kind"] == "score_drift_cleared")
        beat = collector.wait_for("heartbeat", where=lambda h: h["drift_psi"] is not None)[-1]
    kinds = [a["kind"] for a in collector.on("alarm") if a["kind"].startswith("score_drift")]
    assert kinds == ["score_drift", "score_drift_cleared"]
    assert raised[0]["severity"] == "warning" and raised[0]["psi"] >= 1.0
    assert cleared[0]["severity"] == "info" and cleared[0]["psi"] < 0.6
    by_phase = {p: [d for q, d in states if q == p] for p in ("normal", "dim", "back")}
    assert not any(by_phase["normal"])  # the calibration's own light: no alarm
    first_dim = by_phase["dim"].index(True)
    assert first_dim < WINDOW  # raised within the configured window of dimmed cells
    assert by_phase["back"][-1] is False and by_phase["back"].index(False) < WINDOW
    degraded = [s for s in collector.on("status") if s["state"] == "degraded"]
    assert degraded and "drift: PSI" in degraded[0]["detail"]
    assert {"drift_psi", "drifting", "score_hist", "model_id"} <= set(beat)
