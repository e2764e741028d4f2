"""Region facts: the ground truth every explanation must agree with."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.explain.facts import facts_from_map, facts_from_result, thresholds_of
from models.recipe import Thresholds


def two_blobs() -> np.ndarray:
    """A 300x400 map with a disc in the upper centre and a small square in the lower centre."""
    amap = np.zeros((300, 400), np.float32)
    cv2.circle(amap, (200, 50), 20, 0.9, -1)  # upper centre, brighter
    amap[230:250, 190:210] = 0.7  # lower centre, 20x20
    return amap


def test_two_known_blobs_give_two_regions_at_their_positions_and_areas() -> None:
    amap = two_blobs()
    disc_area = float((amap >= 0.8).sum())
    facts = facts_from_map(amap, Thresholds(pixel=0.5, image=0.5), pixel_pitch_mm=0.1)

    assert facts.count == 2
    upper, lower = facts.regions  # largest peak first, as numbered on the overlay
    assert (upper.index, upper.position, lower.index, lower.position) == (
        1,
        "upper centre",
        2,
        "lower centre",
    )
    assert upper.area_px == disc_area
    assert lower.area_px == 400.0
    assert lower.bbox == (190, 230, 20, 20)
    assert lower.area_mm2 == pytest.approx(4.0)
    assert upper.peak == pytest.approx(0.9) and lower.mean == pytest.approx(0.7)
    assert upper.shape == lower.shape == "blob-like"
    assert (facts.width, facts.height, facts.verdict) == (400, 300, "fail")


def test_a_thin_diagonal_line_reads_as_a_scratch_with_its_length() -> None:
    amap = np.zeros((200, 200), np.float32)
    cv2.line(amap, (20, 20), (120, 120), 0.8, 3)
    facts = facts_from_map(amap, Thresholds(pixel=0.5, image=0.5), pixel_pitch_mm=0.05)

    (scratch,) = facts.regions
    assert scratch.shape == "scratch-like"
    assert scratch.length_px == pytest.approx(100 * 2**0.5, rel=0.1)
    assert scratch.length_mm == pytest.approx(scratch.length_px * 0.05)
    assert scratch.angle_deg == pytest.approx(45, abs=5)


def test_regions_below_the_image_threshold_or_minimum_area_are_not_facts() -> None:
    amap = two_blobs()
    facts = facts_from_map(amap, Thresholds(pixel=0.5, image=0.8))
    assert [r.position for r in facts.regions] == ["upper centre"]
    facts = facts_from_map(amap, Thresholds(pixel=0.5, image=0.5, min_defect_area_px=500))
    assert [r.position for r in facts.regions] == ["upper centre"]
    assert facts_from_map(np.zeros((50, 50), np.float32), Thresholds()).verdict == "pass"


def test_facts_from_a_result_payload_agree_with_the_map() -> None:
    from inspector.vision.decision import decide

    amap = two_blobs()
    t = Thresholds(pixel=0.5, image=0.5)
    result = {**decide(amap, 0.9, amap.shape, t, 0.1).to_dict(), "width": 400, "height": 300}
    from_map = facts_from_map(amap, t, pixel_pitch_mm=0.1)
    from_result = facts_from_result(result)

    assert [r.position for r in from_result.regions] == [r.position for r in from_map.regions]
    assert [r.area_px for r in from_result.regions] == [r.area_px for r in from_map.regions]
    assert from_result.pixel_pitch_mm == pytest.approx(0.1)


def test_thresholds_of_a_stored_result_fall_back_when_missing_or_bad() -> None:
    recipe_t = Thresholds(pixel=0.3, image=0.4)
    assert thresholds_of({"thresholds": {"pixel": 0.7, "extra": 1}}).pixel == 0.7
    assert thresholds_of({}) == Thresholds()
    assert thresholds_of({}, recipe_t) == recipe_t
    assert thresholds_of({"thresholds": {"pixel": "high"}}, recipe_t) == recipe_t
    assert thresholds_of({"thresholds": {"image": 7.0}}) == Thresholds()  # out of range
    assert thresholds_of({"thresholds": ["not", "a", "dict"]}) == Thresholds()


def test_facts_from_a_malformed_result_skip_what_they_cannot_read() -> None:
    result = {
        "width": "wide",
        "height": 300,
        "image_score": "high",
        "thresholds": {"pixel": None},
        "regions": [
            {"position": "lower right"},  # no bbox
            {"bbox": [1, 2, "x", 4]},
            "not a region",
            {"bbox": [10, 20, 30, 40], "peak": 0.8, "area_mm2": "n/a"},
        ],
    }
    facts = facts_from_result(result)
    assert facts.count == 1 and facts.regions[0].index == 1
    assert facts.regions[0].bbox == (10, 20, 30, 40) and facts.regions[0].area_mm2 is None
    assert (facts.width, facts.image_score, facts.thresholds) == (0, 0.0, Thresholds())
    assert facts_from_result({"regions": {"bbox": [0, 0, 1, 1]}}).count == 0
