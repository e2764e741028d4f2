"""Poisson synthetic defects: labels are the pixels the blend changed; borders; balance."""

import cv2
import numpy as np
import pytest

from models.data.poisson import (
    MASK_SHAPES,
    SyntheticDefectSet,
    affine_augment,
    changed_region,
    foreground,
    poisson_blend,
    random_mask,
    synthetic_defect,
)
from tests.conftest import textured


def checker(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((((xx // 3) + (yy // 3)) % 2) * 200 + 20).astype(np.uint8)


@pytest.mark.parametrize("shape", MASK_SHAPES)
def test_random_mask_is_filled_and_keeps_an_empty_border(shape):
    mask = random_mask(np.random.default_rng(1), 40, 30, shape)
    assert mask.shape == (40, 30) and mask.dtype == np.uint8
    assert (mask > 0).sum() > 0.15 * 40 * 30
    assert not mask[:2].any() and not mask[-2:].any()
    assert not mask[:, :2].any() and not mask[:, -2:].any()


def test_blend_changes_pixels_only_under_the_placed_mask():
    target = textured(128, 128, seed=3)
    mask = np.zeros((40, 40), np.uint8)
    mask[4:36, 4:36] = 255
    out = poisson_blend(target, checker(40, 40), mask, (64, 64))
    changed = cv2.absdiff(target, out) > 0
    ys, xs = np.nonzero(changed)
    # the mask's 32x32 box is centred on (64, 64): rows/cols 48..79
    assert ys.min() >= 48 and ys.max() <= 79 and xs.min() >= 48 and xs.max() <= 79
    assert changed.sum() > 0.5 * 32 * 32  # the checker really went in


def test_synthetic_label_is_exactly_the_thresholded_change():
    rng = np.random.default_rng(7)
    target = textured(160, 200, seed=1)
    found = 0
    for _ in range(10):
        out, label, ok = synthetic_defect(target, checker(160, 200), rng, threshold=8)
        if not ok:
            assert not label.any() and np.array_equal(out, target)
            continue
        found += 1
        expected = (cv2.absdiff(target, out) > 8).astype(np.uint8)
        assert np.array_equal(label, expected)
        assert np.array_equal(label, changed_region(target, out, 8))
        assert label.sum() >= 8
    assert found >= 5


@pytest.mark.parametrize("center", [(0, 0), (199, 159), (0, 100), (120, 159)])
def test_blend_hanging_over_the_border_is_cut_off_not_an_error(center):
    target = textured(160, 200, seed=2)
    mask = np.zeros((50, 50), np.uint8)
    cv2.circle(mask, (25, 25), 20, 255, -1)
    out = poisson_blend(target, checker(50, 50), mask, center)
    assert out.shape == target.shape
    label = changed_region(target, out, 8)
    assert label.sum() > 50
    ys, xs = np.nonzero(label)
    cx, cy = center
    assert np.abs(xs - cx).max() <= 21 and np.abs(ys - cy).max() <= 21


def test_border_placement_via_region_yields_a_clipped_label():
    rng = np.random.default_rng(0)
    target = textured(120, 120, seed=5)
    corner = np.zeros((120, 120), np.uint8)
    corner[0, 0] = 1  # force the centre onto the corner pixel
    out, label, ok = synthetic_defect(target, 255 - target, rng, region=corner)
    assert ok and out.shape == target.shape
    ys, xs = np.nonzero(label)
    assert label[0:5, 0:5].any() and ys.max() < 60 and xs.max() < 60


def test_blend_that_changes_nothing_is_a_normal_sample():
    flat = np.full((100, 100), 128, np.uint8)
    out, label, ok = synthetic_defect(flat, flat.copy(), np.random.default_rng(0))
    assert not ok and not label.any() and np.array_equal(out, flat)


def test_colour_images_blend_too():
    target = cv2.cvtColor(textured(100, 120, seed=4), cv2.COLOR_GRAY2BGR)
    source = cv2.cvtColor(checker(100, 120), cv2.COLOR_GRAY2BGR)
    out, label, ok = synthetic_defect(target, source, np.random.default_rng(2))
    assert out.shape == target.shape and label.shape == target.shape[:2]
    assert ok == bool(label.any())


def test_dataset_is_balanced_deterministic_and_changes_with_epoch():
    images = [textured(150, 180, seed=i) for i in range(3)]
    ds = SyntheticDefectSet(images, size=112, length=20, seed=3)
    flags = [bool(ds[i][2]) for i in range(len(ds))]
    assert flags[0::2] == [False] * 10
    assert sum(flags[1::2]) == 10  # every odd sample carries a defect
    for i in range(0, 20, 2):
        assert not ds[i][1].any()
    for i in range(1, 20, 2):
        x, y, _ = ds[i]
        assert tuple(x.shape) == (3, 112, 112) and y.sum() >= 8
    a = ds[5]
    assert all(np.array_equal(u.numpy(), v.numpy()) for u, v in zip(a, ds[5], strict=True))
    ds.set_epoch(1)
    assert not np.array_equal(a[0].numpy(), ds[5][0].numpy())


def test_defects_land_on_the_part_not_the_background():
    img = np.full((112, 112), 20, np.uint8)
    img[30:90, 25:95] = textured(60, 70, seed=9)
    part = foreground(img)
    assert part[60, 60] == 1 and part[5, 5] == 0
    ds = SyntheticDefectSet([img, img.copy()], size=112, length=40, seed=0, augment=False)
    for i in range(1, 40, 2):
        _, label, ok = ds.sample(i)
        if ok:
            ys, xs = np.nonzero(label)
            assert part[int(np.median(ys)), int(np.median(xs))] or label[part > 0].any()


def test_affine_augment_keeps_size_and_type():
    img = textured(90, 130, seed=0)
    out = affine_augment(img, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)
