"""Reading a stored anomaly map: one reader for the explainer and the web page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.explain.files import read_map
from models.image_io import ImageError


def saved(tmp_path: Path, amap: np.ndarray) -> Path:
    path = tmp_path / "map.npy"
    np.save(path, amap)
    return path


def test_a_map_is_squeezed_cleaned_and_brought_to_the_frame_size(tmp_path: Path) -> None:
    amap = np.full((1, 30, 40), 0.25, np.float64)
    amap[0, 0, 0] = np.nan
    read = read_map(saved(tmp_path, amap))
    assert read.dtype == np.float32 and read.shape == (30, 40) and read[0, 0] == 0.0
    assert read_map(saved(tmp_path, amap), (60, 80)).shape == (60, 80)


@pytest.mark.parametrize(
    "content",
    [np.zeros((2, 3, 4), np.float32), np.zeros((0, 5), np.float32), np.float32(1.0)],
    ids=["3-D", "empty", "scalar"],
)
def test_a_map_that_is_not_2d_is_refused(tmp_path: Path, content: np.ndarray) -> None:
    with pytest.raises(ImageError, match="not 2-D"):
        read_map(saved(tmp_path, content))


def test_an_unreadable_map_is_an_image_error(tmp_path: Path) -> None:
    truncated = saved(tmp_path, np.zeros((30, 40), np.float32))
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ImageError, match="map unreadable"):
        read_map(truncated)
    with pytest.raises(ImageError, match="map unreadable"):
        read_map(tmp_path / "gone.npy")
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageError, match="map unreadable"):
        read_map(objects)
