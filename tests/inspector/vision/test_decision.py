import numpy as np

from inspector.vision.decision import decide, find_regions, position_word
from models.recipe import Thresholds


def _two_blobs() -> np.ndarray:
    amap = np.zeros((224, 224), np.float32)
    amap[20:40, 20:60] = 0.9  # upper left, 20x40 at model resolution
    amap[150:200, 100:130] = 0.7  # lower centre, 50x30
    return amap


def test_position_words_cover_the_3x3_grid():
    assert position_word(10, 10, 300, 300) == "upper left"
    assert position_word(150, 150, 300, 300) == "centre"
    assert position_word(150, 10, 300, 300) == "upper centre"
    assert position_word(299, 299, 300, 300) == "lower right"
    assert position_word(10, 150, 300, 300) == "centre left"


def test_regions_are_mapped_to_frame_pixels():
    regions = find_regions(_two_blobs(), (448, 672), pixel_threshold=0.5, pixel_pitch_mm=0.1)
    assert [r.position for r in regions] == ["upper left", "lower centre"]
    first, second = regions
    assert first.bbox == (60, 40, 120, 40)  # x scaled by 3, y by 2
    assert first.area_px == 20 * 40 * 6
    assert second.area_px == 50 * 30 * 6
    assert abs(first.area_mm2 - first.area_px * 0.01) < 1e-9
    assert first.peak == np.float32(0.9) and second.peak == np.float32(0.7)


def test_verdict_needs_area_and_peak():
    amap = _two_blobs()
    fails = decide(amap, 0.9, (224, 224), Thresholds(pixel=0.5, image=0.5))
    assert fails.verdict == "fail" and len(fails.regions) == 2
    only_strong = decide(amap, 0.9, (224, 224), Thresholds(pixel=0.5, image=0.8))
    assert [r.position for r in only_strong.regions] == ["upper left"]
    too_small = decide(
        amap, 0.9, (224, 224), Thresholds(pixel=0.5, image=0.5, min_defect_area_px=2000)
    )
    assert too_small.verdict == "pass" and too_small.regions == []
    clean = decide(np.zeros((224, 224), np.float32), 0.0, (224, 224), Thresholds())
    assert clean.verdict == "pass"


def test_decision_serialises_to_plain_json_types():
    import json

    d = decide(_two_blobs(), 0.9, (300, 400), Thresholds(pixel=0.5, image=0.5)).to_dict()
    again = json.loads(json.dumps(d))
    assert again["verdict"] == "fail" and len(again["regions"]) == 2
    assert set(again["regions"][0]) >= {"bbox", "area_px", "peak", "mean", "position"}
