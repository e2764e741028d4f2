"""Region facts: what an explanation must say about a reject, measured from its anomaly map.

Facts are the ground truth for every writer. For a stored reject they are the verdict's own
regions (``facts_from_result``): the box, area, centroid, position, peak and mean that the
MQTT result and the technicians' page show, never measured a second time; the stored map only
adds shape measures (length, width, elongation from ``cv2.minAreaRect`` of the region's pixels).
``facts_from_map`` measures a bare map (no verdict) with ``inspector.vision.decision``'s
``find_regions``. Facts render as text for prompts.

Example:
    >>> amap = np.zeros((300, 300), np.float32); amap[20:60, 130:170] = 0.9
    >>> f = facts_from_map(amap, Thresholds(pixel=0.5, image=0.5), pixel_pitch_mm=0.1)
    >>> f.count, f.regions[0].position, f.regions[0].area_px, round(f.regions[0].area_mm2, 3)
    (1, 'upper centre', 1600.0, 16.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from inspector.core.result import Region, Result
from inspector.vision.decision import Decision, find_regions, position_word
from models.recipe import Thresholds

SCRATCH_ELONGATION = 3.0  # length / width at or above which a region reads as a scratch

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def number_word(n: int) -> str:
    """``2 -> "two"``; digits from ten on."""
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


@dataclass
class RegionFacts:
    """One defect region, in frame pixels (and mm where the pixel pitch is known)."""

    index: int  # 1-based, the number drawn on the overlay (largest peak first)
    position: str  # 3x3-grid words: "upper left" ... "lower right", "centre"
    bbox: tuple[int, int, int, int]  # x, y, width, height
    centroid: tuple[float, float]
    area_px: float
    peak: float
    mean: float
    length_px: float  # long side of the minimum-area rotated rectangle
    width_px: float  # short side
    angle_deg: float  # direction of the long side, 0 = horizontal, 90 = vertical
    area_mm2: float | None = None
    length_mm: float | None = None
    width_mm: float | None = None

    @property
    def elongation(self) -> float:
        """Length over width (1 for a disc, large for a scratch)."""
        return self.length_px / max(self.width_px, 1.0)

    @property
    def shape(self) -> str:
        """``"scratch-like"`` (elongated) or ``"blob-like"``."""
        return "scratch-like" if self.elongation >= SCRATCH_ELONGATION else "blob-like"

    def size_text(self) -> str:
        """``"1,600 px (16.00 mm^2), about 4 mm long and 4 mm wide"``: the area written as the
        technicians' page writes it, the length and width of the region's rotated box."""
        area = f"{self.area_px:,.0f} px"
        if self.area_mm2 is not None:
            area += f" ({self.area_mm2:.2f} mm^2)"
        if self.length_mm is not None and self.width_mm is not None:
            dims = f"about {self.length_mm:.3g} mm long and {self.width_mm:.3g} mm wide"
        else:
            dims = f"about {self.length_px:.0f} px long and {self.width_px:.0f} px wide"
        return f"{area}, {dims}"


@dataclass
class Facts:
    """Everything measured about one frame's map."""

    product: str
    width: int
    height: int
    image_score: float
    thresholds: Thresholds
    pixel_pitch_mm: float | None
    regions: list[RegionFacts] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.regions)

    @property
    def verdict(self) -> str:
        return "fail" if self.regions else "pass"

    def decision(self) -> Decision:
        """The facts as an ``inspector.vision.decision.Decision`` (for ``render_overlay``)."""
        regions = [
            Region(r.bbox, r.area_px, r.peak, r.mean, r.centroid, r.position, r.area_mm2)
            for r in self.regions
        ]
        return Decision(self.verdict, self.image_score, regions, self.thresholds)

    def to_prompt(self) -> str:
        """The facts as plain lines for a language model's system prompt."""
        pitch = (
            f"{self.pixel_pitch_mm} mm per pixel"
            if self.pixel_pitch_mm
            else "pixel pitch unknown (sizes in pixels only)"
        )
        lines = [
            f"Product: {self.product}. Image {self.width} x {self.height} px, {pitch}.",
            f"Verdict: {self.verdict}; anomaly score {self.image_score:.2f} "
            f"(pixel threshold {self.thresholds.pixel:.2f}, image threshold "
            f"{self.thresholds.image:.2f}).",
            f"Defect regions: {self.count}.",
        ]
        for r in self.regions:
            x, y, w, h = r.bbox
            lines.append(
                f"Region {r.index}: {r.position}; box x={x} y={y} w={w} h={h} px; "
                f"area {r.size_text()}; {r.shape} (elongation {r.elongation:.1f}); "
                f"peak score {r.peak:.2f}, mean {r.mean:.2f}."
            )
        return "\n".join(lines)


def _component_points(amap: np.ndarray, region: Region, threshold: float) -> np.ndarray:
    """Pixel coordinates (x, y) of the connected component that ``region`` was made from."""
    x, y, w, h = region.bbox
    crop = (amap[y : y + h, x : x + w] >= threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    if n <= 1:
        return np.array([[x, y]], np.float32)
    # the region's own component is the one whose area matches (others only clip the box)
    best = 1 + int(np.argmin(np.abs(stats[1:, cv2.CC_STAT_AREA] - region.area_px)))
    ys, xs = np.nonzero(labels == best)
    return np.stack([xs + x, ys + y], axis=1).astype(np.float32)


def _shape(points: np.ndarray) -> tuple[float, float, float]:
    """(length, width, angle in degrees) of the minimum-area rectangle around pixel centres."""
    (_, _), (w, h), angle = cv2.minAreaRect(points)
    w, h = w + 1.0, h + 1.0  # pixel centres -> pixel extents
    if w >= h:
        length, width, direction = w, h, angle
    else:
        length, width, direction = h, w, angle + 90.0
    direction = direction % 180.0
    return float(length), float(width), float(min(direction, 180.0 - direction))


def facts_from_map(
    amap: np.ndarray,
    thresholds: Thresholds,
    pixel_pitch_mm: float | None = None,
    product: str = "battery cell",
    image_score: float | None = None,
) -> Facts:
    """Measure the defect regions of a map at the frame's resolution.

    Regions are those of the verdict: connected areas at or above ``thresholds.pixel``, at
    least ``thresholds.min_defect_area_px`` large, whose peak reaches ``thresholds.image``.

    Args:
        amap: float map ``[H, W]`` in [0, 1] at the frame's own resolution.
        thresholds: the bundle's thresholds.
        pixel_pitch_mm: size of a frame pixel, for mm and mm^2.
        product: the product noun, for the text.
        image_score: the image score reported with the verdict (the map's maximum if None).
    """
    amap = np.asarray(amap, dtype=np.float32)
    if amap.ndim != 2:
        raise ValueError(f"anomaly map must be HxW, got shape {amap.shape}")
    h, w = amap.shape
    found = [
        r
        for r in find_regions(
            amap, amap.shape, thresholds.pixel, thresholds.min_defect_area_px, pixel_pitch_mm
        )
        if r.peak >= thresholds.image
    ]
    regions = []
    for i, r in enumerate(found, start=1):
        length, width, angle = _shape(_component_points(amap, r, thresholds.pixel))
        regions.append(
            RegionFacts(
                index=i,
                position=r.position,
                bbox=r.bbox,
                centroid=r.centroid,
                area_px=r.area_px,
                peak=r.peak,
                mean=r.mean,
                length_px=length,
                width_px=width,
                angle_deg=angle,
                area_mm2=r.area_mm2,
                length_mm=length * pixel_pitch_mm if pixel_pitch_mm else None,
                width_mm=width * pixel_pitch_mm if pixel_pitch_mm else None,
            )
        )
    score = float(amap.max()) if image_score is None else float(image_score)
    return Facts(product, w, h, score, thresholds, pixel_pitch_mm, regions)


def _thresholds(raw: dict | None, default: Thresholds | None) -> Thresholds:
    if raw:
        try:
            return Thresholds(**{k: v for k, v in raw.items() if k in Thresholds.model_fields})
        except (TypeError, ValueError):  # pydantic's ValidationError is a ValueError
            pass
    return default if default is not None else Thresholds()


def thresholds_of(result: Result | dict, default: Thresholds | None = None) -> Thresholds:
    """The thresholds of a stored verdict; ``default`` (or the defaults) when missing or bad."""
    typed = result if isinstance(result, Result) else Result.from_payload(result)
    return _thresholds(typed.thresholds, default)


def _region_facts(
    index: int,
    r: Region,
    width: int,
    height: int,
    amap: np.ndarray | None = None,
    pixel_threshold: float = 0.5,
    pixel_pitch_mm: float | None = None,
) -> RegionFacts:
    """One stored region as facts, shaped by its pixels on ``amap`` (frame size) when given,
    else by its bounding box. Every number the result holds is taken as it is; only a region
    stored without ``area_mm2`` gets one from ``pixel_pitch_mm``.

    Raises:
        ValueError and others from OpenCV: the region does not fit the map.
    """
    x, y, bw, bh = r.bbox
    (cx, cy), area_px, area_mm2 = r.centroid, r.area_px, r.area_mm2
    pitch = (area_mm2 / area_px) ** 0.5 if area_mm2 and area_px > 0 else None
    if area_mm2 is None and pixel_pitch_mm:
        pitch, area_mm2 = pixel_pitch_mm, area_px * pixel_pitch_mm**2
    position = r.position or (
        position_word(cx, cy, width, height) if width and height else "unknown position"
    )
    length, width_px, angle = float(max(bw, bh)), float(min(bw, bh)), 0.0 if bw >= bh else 90.0
    if amap is not None and bw > 0 and bh > 0:
        stored = Region((x, y, bw, bh), area_px, 0.0, 0.0, (cx, cy), position)
        points = _component_points(amap, stored, pixel_threshold)
        if len(points) > 1:
            length, width_px, angle = _shape(points)
    return RegionFacts(
        index=index,
        position=position,
        bbox=(x, y, bw, bh),
        centroid=(cx, cy),
        area_px=area_px,
        peak=r.peak,
        mean=r.mean,
        length_px=length,
        width_px=width_px,
        angle_deg=angle,
        area_mm2=area_mm2,
        length_mm=length * pitch if pitch else None,
        width_mm=width_px * pitch if pitch else None,
    )


def facts_from_result(
    result: Result | dict,
    product: str = "battery cell",
    amap: np.ndarray | None = None,
    default_thresholds: Thresholds | None = None,
    pixel_pitch_mm: float | None = None,
) -> Facts:
    """Facts from a result: its ``regions`` exactly as published and shown.

    Args:
        result: the result, or a stored record of one (read with ``Result.from_payload``).
        product: the product noun when the result names none.
        amap: the reject's map at the frame's size, if stored: only the regions' shape
            (length, width, direction) is measured on it; without it the box gives them.
        default_thresholds: thresholds when the result's own are missing or bad.
        pixel_pitch_mm: the bundle's pixel pitch, for mm where the result has none.

    A malformed region is left out (as on the overlay) and bad numbers fall back to defaults,
    so any stored record still gets facts.
    """
    typed = result if isinstance(result, Result) else Result.from_payload(result)
    width, height = typed.width or 0, typed.height or 0
    thresholds = _thresholds(typed.thresholds, default_thresholds)
    if amap is not None and amap.shape != (height, width):
        amap = None  # not this frame's map: shapes from the boxes
    regions: list[RegionFacts] = []
    for r in typed.regions or []:
        try:
            regions.append(
                _region_facts(
                    len(regions) + 1, r, width, height, amap, thresholds.pixel, pixel_pitch_mm
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # numbered like the overlay, which skips it too
    pitch = (
        regions[0].length_mm / regions[0].length_px if regions and regions[0].length_mm else None
    )
    return Facts(
        typed.product or product,
        width,
        height,
        typed.image_score or 0.0,
        thresholds,
        pitch,
        regions,
    )
