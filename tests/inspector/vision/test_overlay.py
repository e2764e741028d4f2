"""The overlay's header names each limit it shows, at the precision that tells them apart."""

from __future__ import annotations

import numpy as np

from inspector.vision.decision import decide
from inspector.vision.overlay import header_lines, render_overlay
from models.recipe import Thresholds
from tests.conftest import textured


def test_the_header_names_the_image_limit_and_the_bars_pixel_limit() -> None:
    amap = np.zeros((301, 457), np.float32)
    amap[100:150, 200:260] = 0.342
    decision = decide(amap, 0.342, amap.shape, Thresholds(pixel=0.27, image=0.3421))
    score, regions = header_lines(decision)
    # 'score 0.34 (limit 0.34)' told a technician nothing: both at 4 decimals, both named
    assert score == "score 0.3420   image limit 0.3421"
    assert "pixel limit 0.2700" in regions and "bar" in regions and "0 defect regions" in regions
    picture = render_overlay(textured(301, 457), amap, decision)
    assert picture.shape[1] > 457 and picture.dtype == np.uint8
