"""The picture a technician looks at: heat map over the frame, boxes, verdict and colour bar."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.vision.decision import Decision, Region

MIN_LONG_SIDE = 640
RED = (40, 40, 230)
GREEN = (60, 170, 60)
WHITE = (255, 255, 255)
CYAN = (230, 200, 60)
TILE_ALPHA = 0.25  # the tile grid is drawn faintly...
ROI_ALPHA = 0.6  # ... the ROI's outline a little less so


def display_image(image: np.ndarray) -> np.ndarray:
    """Any frame -> 8-bit BGR for display (16-bit and float stretched to their own range)."""
    if image.dtype != np.uint8:
        x = image.astype(np.float32)
        lo, hi = float(np.percentile(x, 0.5)), float(np.percentile(x, 99.5))
        image = np.clip((x - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


def _colour_bar(height: int, width: int, threshold: float, scale: float) -> np.ndarray:
    values = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None].repeat(width // 2, 1)
    bar = cv2.applyColorMap((values * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    panel = np.full((height, width, 3), 32, np.uint8)
    panel[:, : width // 2] = bar
    for v in (0.0, 0.5, 1.0):
        y = int(round((1 - v) * (height - 1)))
        cv2.putText(
            panel,
            f"{v:.1f}",
            (width // 2 + 3, min(height - 4, max(12, y + 4))),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * scale,
            WHITE,
            1,
            cv2.LINE_AA,
        )
    ty = int(round((1 - threshold) * (height - 1)))
    cv2.line(panel, (0, ty), (width // 2, ty), WHITE, max(1, int(2 * scale)))
    return panel


def header_lines(decision: Decision) -> tuple[str, str]:
    """The header's two lines: the score against the image limit that decides the verdict, and
    the regions with the pixel limit that the white line on the colour bar marks."""
    t = decision.thresholds
    n = len(decision.regions)
    return (
        f"score {decision.image_score:.4f}   image limit {t.image:.4f}",
        f"{n} defect region{'s' if n != 1 else ''}   pixel limit {t.pixel:.4f} (line on the bar)",
    )


def _faint_polylines(
    out: np.ndarray, polygons: list[np.ndarray], zoom: float, thick: int, alpha: float
) -> None:
    """Draw closed polygons (frame px) onto ``out`` in place, blended at ``alpha``."""
    if not polygons:
        return
    layer = out.copy()
    pts = [np.round(np.asarray(p) * zoom).astype(np.int32) for p in polygons]
    cv2.polylines(layer, pts, True, CYAN, thick, cv2.LINE_AA)
    cv2.addWeighted(layer, alpha, out, 1.0 - alpha, 0.0, dst=out)


def render_overlay(
    image: np.ndarray,
    amap: np.ndarray,
    decision: Decision,
    roi: np.ndarray | None = None,
    tiles: list[np.ndarray] | None = None,
) -> np.ndarray:
    """BGR uint8 picture: the frame with the map blended where it is high, defect regions boxed
    and numbered, a header with the verdict, the score against the image limit and the pixel
    limit, and a colour bar marking the pixel limit.

    Args:
        image: the frame as inspected (any supported type).
        amap: the anomaly map at the frame's resolution.
        decision: the verdict and regions, in frame pixels.
        roi: the inspected region's polygon in frame px, outlined (``Inspection.outlines``).
        tiles: the tiles' quadrilaterals in frame px, drawn faintly so a technician sees what
            was inspected at which pitch.
    """
    base = display_image(image)
    h, w = base.shape[:2]
    zoom = max(1.0, MIN_LONG_SIDE / max(h, w))
    if zoom > 1.0:
        size = (int(round(w * zoom)), int(round(h * zoom)))
        base = cv2.resize(base, size, interpolation=cv2.INTER_NEAREST)
        amap = cv2.resize(amap, size, interpolation=cv2.INTER_LINEAR)
        h, w = base.shape[:2]
    out = _heat_blend(base, amap)
    scale = max(0.6, w / 800)
    thick = max(1, int(round(2 * scale)))
    _faint_polylines(out, list(tiles or []), zoom, max(1, thick // 2), TILE_ALPHA)
    _faint_polylines(out, [roi] if roi is not None else [], zoom, thick, ROI_ALPHA)
    for i, r in enumerate(decision.regions, start=1):
        _box_region(out, i, r, zoom, scale, thick)
    header = _header(decision, w, scale, thick)
    body = np.hstack([out, _colour_bar(h, int(44 * scale), decision.thresholds.pixel, scale)])
    header = np.hstack([header, np.full((header.shape[0], body.shape[1] - w, 3), 24, np.uint8)])
    return np.vstack([header, body])


def _heat_blend(base: np.ndarray, amap: np.ndarray) -> np.ndarray:
    """The frame with the map's colours blended in, more strongly where the map is high."""
    a = np.clip(amap, 0.0, 1.0).astype(np.float32)
    heat = cv2.applyColorMap((a * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    alpha = (0.15 + 0.55 * a)[:, :, None]
    return (base.astype(np.float32) * (1 - alpha) + heat.astype(np.float32) * alpha).astype(
        np.uint8
    )


def _box_region(
    out: np.ndarray, number: int, region: Region, zoom: float, scale: float, thick: int
) -> None:
    """Box a defect region on ``out`` in place, labelled with its number and peak."""
    x, y, bw, bh = (int(round(v * zoom)) for v in region.bbox)
    cv2.rectangle(out, (x, y), (x + bw, y + bh), WHITE, thick + 2, cv2.LINE_AA)
    cv2.rectangle(out, (x, y), (x + bw, y + bh), RED, thick, cv2.LINE_AA)
    label = f"{number}: {region.peak:.2f}"
    ly = y - 6 if y > 24 * scale else y + bh + int(18 * scale)
    for colour, width in ((WHITE, thick + 2), (RED, thick)):  # red text, outlined in white
        cv2.putText(
            out, label, (x, ly), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, colour, width, cv2.LINE_AA
        )


def _header(decision: Decision, width: int, scale: float, thick: int) -> np.ndarray:
    """The band above the picture: the verdict on red or green, and ``header_lines``."""
    header_h = int(52 * scale)
    header = np.full((header_h, width, 3), 24, np.uint8)
    failed = decision.verdict == "fail"
    cv2.rectangle(header, (0, 0), (int(90 * scale), header_h), RED if failed else GREEN, -1)
    cv2.putText(
        header,
        decision.verdict.upper(),
        (int(8 * scale), int(33 * scale)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.8 * scale,
        WHITE,
        thick,
        cv2.LINE_AA,
    )
    for text, y in zip(header_lines(decision), (21, 44), strict=True):
        cv2.putText(
            header,
            text,
            (int(100 * scale), int(y * scale)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * scale,
            WHITE,
            1,
            cv2.LINE_AA,
        )
    return header
