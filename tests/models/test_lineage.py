"""Lineage: the model id covers tensors, thresholds and recipe; each step records its images
by content, its parameters and the software version."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2

from models.recipe import image_set, load_recipe, model_id, record_step, save_recipe, tensors_id
from tests.conftest import textured


def test_model_id_follows_thresholds_and_lineage_but_not_time(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    first, tensors = model_id(bundle), tensors_id(bundle)
    recipe = load_recipe(bundle)
    recipe.thresholds = recipe.thresholds.model_copy(update={"image": 0.42})
    save_recipe(bundle, recipe)
    recalibrated = model_id(bundle)
    assert recalibrated != first and tensors_id(bundle) == tensors

    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"n{i}.png"), textured(40, 50, seed=i))
    paths = sorted(images.iterdir())
    params = {"false_reject_rate": 0.01, "path": images}
    record_step(bundle, "calibrate", params, {"calibration": paths})
    with_step = model_id(bundle)
    assert with_step != recalibrated
    recipe = load_recipe(bundle)
    recipe.lineage[-1].ts = "2000-01-01T00:00:00+00:00"  # the same step at another time
    recipe.created = "2000-01-01T00:00:00+00:00"
    save_recipe(bundle, recipe)
    assert model_id(bundle) == with_step

    step = load_recipe(bundle).lineage[-1]
    assert step.command == "calibrate" and step.params["path"] == str(images)
    assert step.software not in ("", None)
    assert step.images["calibration"].count == 3
    assert set(step.images["calibration"].files) == {"n0.png", "n1.png", "n2.png"}


def test_an_image_set_is_its_content_not_its_names(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for i in range(2):
        cv2.imwrite(str(a / f"x{i}.png"), textured(20, 20, seed=i))
        cv2.imwrite(str(b / f"renamed{1 - i}.png"), textured(20, 20, seed=i))
    assert image_set(sorted(a.iterdir())).sha256 == image_set(sorted(b.iterdir())).sha256
    cv2.imwrite(str(b / "renamed0.png"), textured(20, 20, seed=7))
    assert image_set(sorted(a.iterdir())).sha256 != image_set(sorted(b.iterdir())).sha256
