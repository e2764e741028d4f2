"""Anomaly map -> verdict and defect regions, using the thresholds of a bundle's recipe.

Thresholding runs on the model-resolution map; regions are mapped to frame coordinates, so
the full-resolution map is only needed for pictures of rejects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from inspector.core.result import Region, verdict_payload
from models.recipe import THRESHOLD_DECIMALS, Thresholds

ROWS = ("upper", "centre", "lower")
COLUMNS = ("left", "centre", "right")


def position_word(x: float, y: float, width: int, height: int) -> str:
    """The 3x3-grid position of a point: "upper left", "upper centre", ... "lower right"."""
    row = ROWS[min(2, max(0, int(3 * y / height)))]
    col = COLUMNS[min(2, max(0, int(3 * x / width)))]
    return "centre" if row == col == "centre" else f"{row} {col}"


@dataclass
class Decision:
    """The verdict for one frame and why."""

    verdict: str  # "pass" | "fail"
    image_score: float
    regions: list[Region] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def defect_area_px(self) -> float:
        return float(sum(r.area_px for r in self.regions))

    def to_dict(self) -> dict:
        """The verdict's part of a result (``inspector.core.result``), as ``inspector predict``
        writes it beside each image."""
        return verdict_payload(
            self.verdict,
            self.image_score,
            self.defect_area_px,
            self.regions,
            published_thresholds(self.thresholds),
        )


def published_thresholds(thresholds: Thresholds) -> dict:
    """The thresholds as results carry them: to the 4 decimals of the scores beside them."""
    return {
        k: round(v, THRESHOLD_DECIMALS) if isinstance(v, float) else v
        for k, v in thresholds.model_dump().items()
    }


def find_regions(
    amap: np.ndarray,
    frame_shape: tuple[int, ...],
    pixel_threshold: float,
    min_area_px: float = 0.0,
    pixel_pitch_mm: float | None = None,
) -> list[Region]:
    """Connected areas of ``amap >= pixel_threshold`` (8-connected), largest peak first.

    Args:
        amap: the anomaly map at model resolution (``[h, w]``).
        frame_shape: the frame's ``(H, W, ...)``; regions are reported in its pixels.
        pixel_threshold: map value at which a pixel counts as anomalous.
        min_area_px: smallest region kept, in frame pixels.
        pixel_pitch_mm: size of a frame pixel, for areas in mm^2.
    """
    h, w = amap.shape
    fh, fw = int(frame_shape[0]), int(frame_shape[1])
    sx, sy = fw / w, fh / h
    mask = (amap >= pixel_threshold).astype(np.uint8)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    regions = []
    for i in range(1, n):
        area = float(stats[i, cv2.CC_STAT_AREA]) * sx * sy
        if area < min_area_px:
            continue
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        values = amap[labels == i]
        x0, y0 = math.floor(x * sx), math.floor(y * sy)
        x1, y1 = min(fw, math.ceil((x + bw) * sx)), min(fh, math.ceil((y + bh) * sy))
        cx, cy = (float(centroids[i, 0]) + 0.5) * sx, (float(centroids[i, 1]) + 0.5) * sy
        regions.append(
            Region(
                bbox=(x0, y0, x1 - x0, y1 - y0),
                area_px=area,
                peak=float(values.max()),
                mean=float(values.mean()),
                centroid=(cx, cy),
                position=position_word(cx, cy, fw, fh),
                area_mm2=area * pixel_pitch_mm**2 if pixel_pitch_mm else None,
            )
        )
    return sorted(regions, key=lambda r: -r.peak)


def decide(
    amap: np.ndarray,
    image_score: float,
    frame_shape: tuple[int, ...],
    thresholds: Thresholds,
    pixel_pitch_mm: float | None = None,
) -> Decision:
    """Fail when a region reaches the pixel threshold, the minimum area and the image threshold.

    Example:
        >>> amap = np.zeros((224, 224), np.float32); amap[10:30, 10:30] = 0.9
        >>> d = decide(amap, 0.9, (448, 448), Thresholds(pixel=0.5, image=0.6))
        >>> d.verdict, d.regions[0].position, d.regions[0].area_px
        ('fail', 'upper left', 1600.0)
    """
    regions = [
        r
        for r in find_regions(
            amap, frame_shape, thresholds.pixel, thresholds.min_defect_area_px, pixel_pitch_mm
        )
        if r.peak >= thresholds.image
    ]
    return Decision("fail" if regions else "pass", float(image_score), regions, thresholds)
