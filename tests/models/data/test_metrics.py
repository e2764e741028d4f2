"""Metrics agree with scikit-learn (and with a brute-force PRO) on fixed arrays."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from models.data import metrics

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1, 0])
SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9, 0.3, 0.2, 0.65, 0.5])


def test_image_auroc_matches_sklearn():
    assert metrics.image_auroc(LABELS, SCORES) == pytest.approx(roc_auc_score(LABELS, SCORES))


def test_f1_max_is_the_best_f1_over_all_thresholds():
    best = max(f1_score(LABELS, (t <= SCORES).astype(int)) for t in np.unique(SCORES))
    assert metrics.image_f1_max(LABELS, SCORES) == pytest.approx(best)


def test_pixel_auroc_matches_sklearn_on_flattened_pixels():
    rng = np.random.default_rng(0)
    masks = [(rng.random((6, 7)) > 0.7).astype(np.uint8) for _ in range(3)]
    maps = [m * 0.3 + rng.random((6, 7)) for m in masks]
    expected = roc_auc_score(
        np.concatenate([m.ravel() for m in masks]), np.concatenate([a.ravel() for a in maps])
    )
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(expected)


def test_undefined_metrics_are_none_not_a_number():
    assert metrics.image_auroc([0, 0, 0], [0.1, 0.2, 0.3]) is None
    assert metrics.image_f1_max([1, 1], [0.1, 0.2]) is None
    assert metrics.pixel_auroc([], []) is None
    assert metrics.aupro([np.zeros((4, 4))], [np.ones((4, 4))]) is None


def brute_force_aupro(masks, maps, max_fpr=0.3):
    import cv2

    regions, normal = [], []
    for m, a in zip(masks, maps, strict=True):
        n, lab = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        regions += [a[lab == i] for i in range(1, n)]
        normal.append(a[m == 0])
    normal = np.concatenate(normal)
    ts = np.unique(np.concatenate([normal, *regions]))[::-1]
    fpr = [0.0] + [float((normal >= t).mean()) for t in ts]
    pro = [0.0] + [float(np.mean([(r >= t).mean() for r in regions])) for t in ts]
    fpr, pro = np.array(fpr), np.array(pro)
    inside = fpr <= max_fpr
    x, y = list(fpr[inside]), list(pro[inside])
    j = int(inside.sum())
    if j < len(fpr):
        y.append(
            pro[j - 1] + (pro[j] - pro[j - 1]) * (max_fpr - fpr[j - 1]) / (fpr[j] - fpr[j - 1])
        )
        x.append(max_fpr)
    return np.trapezoid(y, x) / max_fpr


def test_aupro_matches_a_brute_force_per_region_overlap():
    rng = np.random.default_rng(1)
    masks, maps = [], []
    for _ in range(3):
        m = np.zeros((12, 12), np.uint8)
        m[2:5, 2:6] = 1
        m[8:11, 7:9] = 1
        masks.append(m)
        maps.append(m * rng.random((12, 12)) * 0.8 + rng.random((12, 12)) * 0.6)
    assert metrics.aupro(masks, maps) == pytest.approx(brute_force_aupro(masks, maps), abs=1e-9)


def test_aupro_is_one_for_a_perfect_map_and_low_for_an_inverted_one():
    m = np.zeros((20, 20), np.uint8)
    m[5:9, 5:9] = 1
    m[14:17, 2:6] = 1
    assert metrics.aupro([m], [m.astype(float)]) == pytest.approx(1.0)
    assert metrics.aupro([m], [1.0 - m]) < 0.05
