"""Calibration: thresholds fitted on N normal images hold their false-reject rate on others."""

import shutil

import cv2
import numpy as np
import pytest

from inspector.offline.calibration import calibrate, wilson
from inspector.runtime.predictor import Predictor
from models.bundle_files import CALIBRATION_FILE
from models.data.datasets import Sample
from models.recipe import load_recipe
from tests.conftest import paste_foreign, textured

N = 100
TARGET = 0.1


def write_set(folder, seeds, defect=False):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in seeds:
        img = textured(96, 128, seed=s)
        if defect:
            img = paste_foreign(img, (40 + s % 30, 20 + s % 40, 36, 36), seed=s)
        cv2.imwrite(str(folder / f"{s:04d}.png"), img)
        paths.append(folder / f"{s:04d}.png")
    return paths


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_bundle):
    out = tmp_path_factory.mktemp("calib") / "bundle"
    shutil.copytree(tiny_bundle, out)
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib_data")
    return (
        write_set(root / "fit", range(100, 100 + N)),
        write_set(root / "check", range(300, 300 + N)),
        write_set(root / "defect", range(500, 520), defect=True),
    )


def test_threshold_holds_its_false_reject_rate_on_a_second_normal_set(bundle, sets):
    fit, check, defects = sets
    predictor = Predictor(bundle, "torch")
    result = calibrate(
        predictor,
        fit,
        [Sample(p, 1, "foreign") for p in defects],
        TARGET,
        holdout=False,
        progress=False,
        margin=0.0,  # tiny's normal scores sit within a few margins of each other
    )
    recipe = load_recipe(bundle)
    assert recipe.thresholds.calibrated and recipe.thresholds == result.thresholds
    assert (bundle / CALIBRATION_FILE).is_file()
    assert result.fit_rate.k <= int(TARGET * N) and result.fit_rate.k >= int(TARGET * N) - 3

    # the real decision path, with the thresholds as stored in recipe.yaml
    fresh = Predictor(bundle, "torch")
    frames = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in check]
    verdicts = [r.verdict for r in fresh.inspect_batch(frames)]
    frr = verdicts.count("fail") / len(verdicts)
    assert abs(frr - TARGET) <= 0.09, frr  # binomial sd at n=100 is 0.03

    assert result.escape_rate is not None and result.escape_rate.n == 20
    assert set(result.escape_by_defect) == {"foreign"}
    lines = "\n".join(result.summary())
    assert "pixel threshold" in lines and "escapes" in lines


def test_held_out_check_is_reported_when_there_are_enough_images(bundle, sets):
    fit, _, _ = sets
    predictor = Predictor(bundle, "torch")
    result = calibrate(predictor, fit[:40], target_rate=0.02, progress=False, write=False)
    assert result.holdout_rate is not None and result.holdout_rate.n == 12
    assert result.n_fit == 28
    assert any("cannot resolve" in n for n in result.notes)  # 28 images cannot show 2 %
    few = calibrate(predictor, fit[:10], target_rate=0.2, progress=False, write=False)
    assert few.holdout_rate is None and any("no held-out check" in n for n in few.notes)


def test_bad_rates_are_refused(bundle, sets):
    with pytest.raises(ValueError, match="between 0 and 1"):
        calibrate(Predictor(bundle, "torch"), sets[0][:3], target_rate=1.5, progress=False)


def test_wilson_interval_is_sound_at_zero_and_brackets_the_rate():
    zero = wilson(0, 50)
    assert zero.rate == 0 and zero.low == 0 and 0.05 < zero.high < 0.1
    mid = wilson(10, 100)
    assert mid.low < 0.1 < mid.high
    assert np.isclose(mid.rate, 0.1)


def test_min_defect_area_is_half_a_patch_of_the_bundles_own_grid(bundle, sets):
    from models.bundle import load_detector

    fit, _, _ = sets
    predictor = Predictor(bundle, "torch")
    grid = load_detector(bundle).encoder.grid_size
    assert grid == (predictor.recipe.patch_grid,) * 2 == (16, 16)  # tiny: 224 px, 14-px patches
    frame_area = 96 * 128
    for side in (16, 8):
        predictor.recipe = predictor.recipe.model_copy(update={"patch_grid": side})
        result = calibrate(predictor, fit[:10], holdout=False, progress=False, write=False)
        expected = round(0.5 * frame_area / side**2, 1)
        assert result.thresholds.min_defect_area_px == pytest.approx(expected)


@pytest.mark.parametrize("margin", [0.0, 0.02])
def test_image_threshold_is_the_highest_passing_normal_peak_plus_the_stated_margin(
    bundle, sets, tmp_path, margin
):
    """A normal cell at the limit on one backend must not fail on another: the limit sits a
    stated margin above it, at the 4 decimals results show, and calibration says so."""
    import json

    own = tmp_path / "bundle"
    shutil.copytree(bundle, own)
    fit, _, _ = sets
    result = calibrate(
        Predictor(own, "torch"), fit[:30], target_rate=0.1, holdout=False, progress=False,
        margin=margin,
    )  # fmt: skip
    t, passing = result.thresholds, result.highest_passing_peak
    assert passing is not None
    assert t.image >= passing + margin and t.image > passing
    assert t.image - passing < margin + 1e-4 + 1e-9  # rounded up to 4 decimals, no further
    assert t.image == round(t.image, 4) and t.pixel == round(t.pixel, 4)
    assert f"margin {margin:.4f}" in "\n".join(result.summary())
    stored = json.loads((own / CALIBRATION_FILE).read_text())
    assert stored["margin"] == margin and stored["backend"] == "torch"
    assert stored["highest_passing_peak"] == passing
    assert load_recipe(own).backend == "torch"
    assert result.all_rate.n == 30 and result.all_rate.k == result.fit_rate.k


def test_a_margin_outside_its_range_is_refused(bundle, sets):
    with pytest.raises(ValueError, match="margin"):
        calibrate(Predictor(bundle, "torch"), sets[0][:3], margin=-0.1, progress=False)
