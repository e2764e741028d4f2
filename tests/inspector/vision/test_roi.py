import json
import math

import cv2
import numpy as np
import pytest

from inspector.vision.roi import extract, locate, parse_roi, to_frame
from models.data.synth import pouch_frame
from models.image_io import ImageError
from models.recipe import Roi

SIZE, PITCH = (960, 800), 0.125  # a small line frame: the cell is about 640 x 528 px


def _angle_deg(outline: np.ndarray) -> float:
    dx, dy = outline[1] - outline[0]
    return math.degrees(math.atan2(dy, dx))


@pytest.mark.parametrize(
    ("angle", "offset"), [(10.0, (0.0, 0.0)), (0.0, (110.0, -70.0)), (-10.0, (-90.0, 60.0))]
)
def test_a_tilted_or_off_centre_cell_is_found_and_cut_out_upright(angle, offset):
    frame, defect = pouch_frame(3, "particle", 4.0, angle, offset, SIZE, PITCH)
    view = locate(frame, Roi(), scale=1.0, min_side=224)
    # OpenCV's y axis points down: a cell turned counter-clockwise has a rising top edge
    assert _angle_deg(view.outline) == pytest.approx(-angle, abs=1.0)
    centre = view.outline.mean(axis=0)
    expected = np.array(SIZE) / 2 + offset
    assert np.abs(centre - expected).max() < 0.08 * SIZE[0]  # the tabs shift it a little
    ys, xs = np.nonzero(defect)
    inside = [cv2.pointPolygonTest(view.outline.astype(np.float32), (float(x), float(y)), False)
              for x, y in zip(xs[::7], ys[::7], strict=True)]
    assert min(inside) >= 0, "the defect lies outside the region found"
    canvas = extract(frame, view)
    # upright: the cell's long straight sides are horizontal rows of the canvas
    rows = np.abs(np.diff(canvas.astype(np.float32), axis=0)).mean(axis=1)
    cols = np.abs(np.diff(canvas.astype(np.float32), axis=1)).mean(axis=0)
    assert rows.max() > 3 * np.median(rows) and cols.max() > 3 * np.median(cols)


def test_a_frame_without_a_cell_is_an_error_that_says_so():
    belt = np.random.default_rng(0).normal(35, 3, (600, 800)).clip(0, 255).astype(np.uint8)
    with pytest.raises(ImageError, match="no cell found"):
        locate(belt, Roi(), scale=1.0)


def test_outside_a_fixed_rectangle_nothing_is_scored():
    frame = np.full((300, 400), 128, np.uint8)
    view = locate(frame, Roi(mode="rect", rect=[50, 40, 200, 120]), scale=0.5, min_side=1)
    assert view.size == (100, 60)
    amap = to_frame(np.ones((60, 100), np.float32), view, (150, 200))
    assert amap[20:80, 25:125].min() > 0.99
    amap[18:82, 23:127] = 0
    assert amap.max() == 0.0


def test_a_polygon_masks_the_canvas():
    frame = np.full((200, 200), 128, np.uint8)
    roi = Roi(mode="polygon", polygon=[[0, 0], [200, 0], [0, 200]])
    view = locate(frame, roi, scale=1.0)
    assert view.mask[10, 10] == 255 and view.mask[190, 190] == 0


def test_roi_option_reads_auto_rectangles_and_polygon_files(tmp_path):
    assert parse_roi("auto").mode == "auto"
    assert parse_roi("10,20,300,200").rect == [10, 20, 300, 200]
    poly = tmp_path / "roi.json"
    poly.write_text(json.dumps([[0, 0], [100, 0], [50, 80]]))
    assert parse_roi(str(poly)).polygon == [[0, 0], [100, 0], [50, 80]]
    with pytest.raises(ValueError, match="not 'auto'"):
        parse_roi("left half")
