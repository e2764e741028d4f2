"""Anomaly-detection metrics: image AUROC, pixel AUROC, AUPRO (FPR <= 0.3), image F1-max.

scikit-learn computes what it has (ROC AUC, precision-recall); AUPRO (per-region overlap,
Bergmann et al., MVTec AD) is computed here exactly from sorted scores. Every function returns
None when the metric is undefined (one class only, no masks) rather than a made-up number.
No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score

AUPRO_MAX_FPR = 0.3
MAX_THRESHOLDS = 5000


def _two_classes(labels: np.ndarray) -> bool:
    return labels.size > 0 and 0 < int(labels.sum()) < labels.size


def image_auroc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve of image scores vs. image labels (1 = defective)."""
    y = np.asarray(labels).astype(np.int64).ravel()
    if not _two_classes(y):
        return None
    return float(roc_auc_score(y, np.asarray(scores, np.float64).ravel()))


def image_f1_max(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """The best F1 over all image-score thresholds."""
    y = np.asarray(labels).astype(np.int64).ravel()
    if not _two_classes(y):
        return None
    precision, recall, _ = precision_recall_curve(y, np.asarray(scores, np.float64).ravel())
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(f1.max())


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> float | None:
    """ROC AUC over all pixels of all images (masks 0/1, maps same shapes)."""
    if not masks:
        return None
    y = np.concatenate([np.asarray(m).ravel() > 0 for m in masks])
    if not _two_classes(y):
        return None
    s = np.concatenate([np.asarray(a, np.float32).ravel() for a in maps])
    return float(roc_auc_score(y, s))


def pro_curve(
    masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_fpr: float = AUPRO_MAX_FPR
) -> tuple[np.ndarray, np.ndarray] | None:
    """(FPR, PRO) at every threshold where FPR <= ``max_fpr``, FPR ascending, interpolated to
    end exactly at ``max_fpr``. PRO = mean over ground-truth regions (8-connected) of the
    fraction of the region at or above the threshold; FPR over the normal pixels."""
    normal, regions = [], []
    for mask, amap in zip(masks, maps, strict=True):
        m = (np.asarray(mask) > 0).astype(np.uint8)
        a = np.asarray(amap, np.float64)
        normal.append(a[m == 0])
        n, labels = cv2.connectedComponents(m, connectivity=8)
        regions += [np.sort(a[labels == i]) for i in range(1, n)]
    normal_scores = np.sort(np.concatenate(normal)) if normal else np.empty(0)
    if not regions or normal_scores.size == 0:
        return None
    # thresholds high to low (FPR rises as they fall): every distinct score on small inputs,
    # else a fine grid of normal-score quantiles reaching a little past max_fpr
    thresholds = np.unique(np.concatenate([normal_scores, *regions]))[::-1]
    if thresholds.size > MAX_THRESHOLDS:
        levels = np.linspace(0.0, min(1.0, 1.2 * max_fpr), MAX_THRESHOLDS)
        thresholds = np.unique(np.quantile(normal_scores, 1.0 - levels))[::-1]
    fpr = 1.0 - np.searchsorted(normal_scores, thresholds, side="left") / normal_scores.size
    pro = np.zeros_like(thresholds)
    for r in regions:
        pro += 1.0 - np.searchsorted(r, thresholds, side="left") / r.size
    pro /= len(regions)
    fpr = np.concatenate([[0.0], fpr])
    pro = np.concatenate([[0.0], pro])
    keep = fpr <= max_fpr
    cut = int(keep.sum())
    fpr_k, pro_k = fpr[:cut], pro[:cut]
    if cut < fpr.size and fpr_k[-1] < max_fpr:
        f0, f1, p0, p1 = fpr[cut - 1], fpr[cut], pro[cut - 1], pro[cut]
        p_end = p0 + (p1 - p0) * (max_fpr - f0) / (f1 - f0)
        fpr_k, pro_k = np.append(fpr_k, max_fpr), np.append(pro_k, p_end)
    return fpr_k, pro_k


def aupro(
    masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_fpr: float = AUPRO_MAX_FPR
) -> float | None:
    """Area under the PRO curve up to ``max_fpr``, divided by ``max_fpr`` (1.0 = perfect)."""
    curve = pro_curve(masks, maps, max_fpr)
    if curve is None:
        return None
    fpr, pro = curve
    return float(np.trapezoid(pro, fpr) / max_fpr)
