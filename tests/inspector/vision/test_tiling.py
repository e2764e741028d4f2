import numpy as np
import pytest

from inspector.vision.tiling import positions, stitch, tile_grid


@pytest.mark.parametrize("length", [224, 225, 600, 689, 1377])
def test_tiles_cover_the_canvas_edge_to_edge_with_the_overlap_asked(length):
    starts = positions(length, 224, 0.25)
    assert starts[0] == 0 and starts[-1] + 224 == max(length, 224)
    gaps = np.diff(starts)
    assert (gaps <= 224 * 0.75 + 1).all()  # neighbours overlap by at least a quarter


def test_a_map_cut_into_tiles_and_stitched_comes_back_without_seams():
    h, w = 500, 689
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    truth = 0.3 + 0.4 * np.sin(xx / 90.0) * np.cos(yy / 70.0)
    grid = tile_grid((w, h), 224, 0.25)
    maps = np.stack([truth[y : y + bh, x : x + bw] for x, y, bw, bh in grid.boxes])
    assert np.abs(stitch(maps, grid) - truth).max() < 1e-5


def test_tiles_that_disagree_blend_smoothly_instead_of_showing_their_borders():
    grid = tile_grid((600, 224), 224, 0.25)
    levels = np.resize(np.array([0.2, 0.6, 0.3], np.float32), len(grid))
    maps = np.stack([np.full((224, 224), v, np.float32) for v in levels])
    row = stitch(maps, grid)[112]
    # a hard seam would jump by the full 0.4 between two neighbouring pixels
    assert np.abs(np.diff(row)).max() < 0.05
    assert row.min() >= levels.min() - 1e-6 and row.max() <= levels.max() + 1e-6


def test_one_tile_over_the_whole_canvas_is_resized_to_it():
    grid = tile_grid((300, 150), None)
    out = stitch(np.full((1, 224, 224), 0.7, np.float32), grid)
    assert out.shape == (150, 300) and np.allclose(out, 0.7)
