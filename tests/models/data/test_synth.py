import cv2
import numpy as np
import pytest

from models.data.synth import DEFECTS, render, write_dataset
from tests.cli_helpers import run_inspector


@pytest.mark.parametrize("kind", ["pouch", "ultrasound"])
def test_same_seed_same_image_and_normal_images_have_empty_masks(kind):
    a, ma = render(kind, [7, 0, 1])
    b, _ = render(kind, [7, 0, 1])
    c, _ = render(kind, [7, 0, 2])
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.uint8 and not ma.any()


@pytest.mark.parametrize(("kind", "defect"), [(k, d) for k in DEFECTS for d in DEFECTS[k]])
def test_defect_mask_marks_where_the_image_changed(kind, defect):
    seed = [3, 2, 0]
    normal, _ = render(kind, seed)
    faulty, mask = render(kind, seed, defect=defect)
    assert set(np.unique(mask)) <= {0, 255} and 20 < (mask > 0).sum() < 0.1 * mask.size
    changed = np.abs(faulty.astype(int) - normal.astype(int)) > 10
    assert changed.any()
    # what changed lies (almost) entirely inside the mask
    inside = cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0
    assert (changed & ~inside).sum() <= 0.02 * changed.sum()


def test_dataset_has_mvtec_layout_and_size_limits(tmp_path):
    counts = write_dataset(tmp_path, "ultrasound", 2, 1, 1, seed=0, size=(250, 300))
    assert counts == {"train/good": 2, "test/good": 1, "test/bubble": 1, "test/bubble_cluster": 1}
    img = cv2.imread(str(tmp_path / "test/bubble/0000.png"), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(tmp_path / "ground_truth/bubble/0000_mask.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == mask.shape == (300, 250)
    with pytest.raises(ValueError, match="200..700"):
        write_dataset(tmp_path, "pouch", 1, 0, 0, size=(100, 300))


def test_synth_command_writes_the_dataset(tmp_path):
    proc = run_inspector(
        "synth",
        "--kind",
        "pouch",
        "--out",
        str(tmp_path),
        "--train",
        "1",
        "--test-good",
        "1",
        "--test-defect",
        "1",
        "--size",
        "300x200",
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "test").iterdir()) == sorted(
        ["good", *DEFECTS["pouch"]]
    )
    bad = run_inspector("synth", "--kind", "xray", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "kind must be one of" in bad.stderr


@pytest.mark.parametrize("kind", ["particle", "pinhole", "scratch"])
@pytest.mark.parametrize("mm", [0.5, 2.0])
def test_line_frame_defects_are_as_large_as_asked_in_mm(kind, mm):
    from models.data.synth import pouch_frame

    pitch = 0.1
    img, mask = pouch_frame(4, kind, mm, size=(1200, 1000), pitch_mm=pitch)
    assert img.shape == mask.shape == (1000, 1200) and img.dtype == np.uint8
    ys, xs = np.nonzero(mask)
    extent_mm = max(np.ptp(xs) + 1, np.ptp(ys) + 1) * pitch
    assert 0.6 * mm <= extent_mm <= 1.6 * mm + 2 * pitch, (kind, mm, extent_mm)
    normal, none = pouch_frame(4, size=(1200, 1000), pitch_mm=pitch)
    assert not none.any()
    assert np.abs(normal.astype(int) - img.astype(int))[mask == 0].mean() < 1.0
