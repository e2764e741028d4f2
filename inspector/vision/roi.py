"""Region of interest: which part of a frame is inspected, and its deskewed canvas.

A recipe's ``roi`` is ``auto`` (find the cell: the largest foreground contour and its rotated
rectangle), a fixed rectangle or a polygon in frame pixels. ``locate`` turns it into a
``RoiView``: an affine map from frame pixels to an upright *canvas* at the inspection scale,
the canvas size and the mask of inspected canvas pixels. ``extract`` cuts the canvas out of a
frame, ``to_frame`` maps a canvas-sized anomaly map back into frame coordinates (zero outside
the ROI, so pixels outside are never scored). OpenCV and NumPy only, like preprocessing.

Coordinates are continuous: pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.image_io import ImageError
from models.recipe import Roi

ANALYSIS_SIDE = 512  # long side the frame is shrunk to while looking for the cell
ATTACHED_SHARE = 0.005  # pieces this share of the cell's area, near it, are part of it (tabs)
MIN_SEPARABILITY = 0.75  # Otsu's criterion below which no object stands out
AREA_AA_BELOW = 0.75  # canvas scales below this are area-resized first (no aliasing)


@dataclass(frozen=True)
class RoiView:
    """One frame's ROI as the inspection sees it.

    Attributes:
        matrix: ``2x3`` affine, continuous frame px -> canvas px (rotation + scale + shift).
        size: canvas ``(width, height)`` in px.
        mask: ``uint8`` canvas mask, 255 where the ROI is (pixels outside are not scored).
        outline: the ROI's polygon in frame px, ``[N, 2]`` (for the overlay).
        frame_size: the frame's ``(width, height)``.
    """

    matrix: np.ndarray
    size: tuple[int, int]
    mask: np.ndarray
    outline: np.ndarray
    frame_size: tuple[int, int]  # the frame's (width, height)

    @property
    def scale(self) -> float:
        """Canvas px per frame px."""
        return float(math.hypot(self.matrix[0, 0], self.matrix[0, 1]))

    def canvas_to_frame(self, points: np.ndarray) -> np.ndarray:
        """Canvas points ``[N, 2]`` -> frame points."""
        inv = cv2.invertAffineTransform(self.matrix)
        return np.asarray(points, np.float64) @ inv[:, :2].T + inv[:, 2]


def _pixel_matrix(matrix: np.ndarray) -> np.ndarray:
    """A continuous-coordinate affine as OpenCV's warps want it (pixel centres at integers)."""
    a, b = matrix[:, :2], matrix[:, 2]
    return np.hstack([a, (b + a @ [0.5, 0.5] - 0.5)[:, None]])


def _gray8(frame: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """The frame as 8-bit gray with its long side at most ``side``, and that shrink factor."""
    h, w = frame.shape[:2]
    f = min(1.0, side / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    if small.ndim == 3 and small.shape[2] == 3:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    small = small.reshape(small.shape[:2]).astype(np.float32)
    lo, hi = float(small.min()), float(small.max())
    return ((small - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8), f


def _separability(gray: np.ndarray, level: float) -> float:
    """Otsu's criterion: between-class over total variance of a split at ``level`` (about 0.64
    for plain noise, near 1 for an object clearly lighter or darker than its background)."""
    x = gray.astype(np.float64).ravel()
    total = x.var()
    if total <= 0:
        return 0.0
    hi = x > level
    p = hi.mean()
    if p in (0.0, 1.0):
        return 0.0
    return float(p * (1 - p) * (x[hi].mean() - x[~hi].mean()) ** 2 / total)


RotatedRect = tuple[tuple[float, float], tuple[float, float], float]


def find_cell(frame: np.ndarray, min_area: float = 0.02) -> RotatedRect:
    """The cell's rotated rectangle ``((cx, cy), (w, h), angle)`` in frame px (OpenCV's form).

    Foreground is split from the belt/fixture by Otsu's threshold; the background is the side
    most of the frame border falls on. The largest foreground contour is the cell, with any
    sizeable pieces within its reach (tabs behind a dark sealant band).

    Raises:
        ImageError: no foreground object covers ``min_area`` of the frame.
    """
    gray, f = _gray8(frame, ANALYSIS_SIDE)
    gray = cv2.GaussianBlur(gray, (5, 5), 0)
    level, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    sep = _separability(gray, level)
    if sep < MIN_SEPARABILITY:
        raise ImageError(
            f"no cell found: nothing stands out from the background (separability {sep:.2f}, "
            f"a cell on a belt gives over {MIN_SEPARABILITY})"
        )
    border = np.concatenate([binary[0], binary[-1], binary[:, 0], binary[:, -1]])
    if (border > 0).mean() > 0.5:
        binary = 255 - binary
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, k)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, k)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        raise ImageError("no cell found: nothing stands out from the background")
    biggest = max(contours, key=cv2.contourArea)
    share = cv2.contourArea(biggest) / binary.size
    if share < min_area:
        raise ImageError(
            f"no cell found: the largest object covers {share:.1%} of the frame, "
            f"less than the {min_area:.0%} a cell must"
        )
    # parts of the cell split off by a dark band (tabs beyond their sealant) belong to it
    (bx, by), (bw, bh), _ = cv2.minAreaRect(biggest)
    reach = 0.75 * math.hypot(bw, bh)
    parts = [biggest] + [
        c
        for c in contours
        if c is not biggest
        and cv2.contourArea(c) >= ATTACHED_SHARE * cv2.contourArea(biggest)
        and math.dist(c.reshape(-1, 2).mean(axis=0), (bx, by)) < reach
    ]
    (cx, cy), (w, h), angle = cv2.minAreaRect(np.concatenate(parts))
    return ((cx + 0.5) / f - 0.5, (cy + 0.5) / f - 0.5), (w / f, h / f), angle


def _upright_axes(rect: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Centre, unit axes (``u`` the side nearest the frame's x axis, ``v`` = ``u`` turned by
    90 deg) and the side lengths along them of an OpenCV rotated rectangle: the smallest
    rotation that makes it upright."""
    pts = cv2.boxPoints(rect).astype(np.float64)
    e1, e2 = pts[1] - pts[0], pts[2] - pts[1]
    along, across = (e1, e2) if abs(e1[0]) >= abs(e1[1]) else (e2, e1)
    width, height = float(np.linalg.norm(along)), float(np.linalg.norm(across))
    u = along / max(width, 1e-9)
    if u[0] < 0:
        u = -u
    v = np.array([-u[1], u[0]])
    centre = pts.mean(axis=0) + 0.5  # boxPoints is in pixel-centre coordinates
    return centre, u, v, width, height


def _view(
    centre: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    width: float,
    height: float,
    scale: float,
    min_side: int,
    outline: np.ndarray,
    frame_size: tuple[int, int],
) -> RoiView:
    """The view of an upright box (``width`` x ``height`` frame px along ``u``, ``v``)."""
    cw = max(min_side, math.ceil(width * scale - 1e-6))
    ch = max(min_side, math.ceil(height * scale - 1e-6))
    origin = centre - u * (cw / scale) / 2 - v * (ch / scale) / 2
    a = scale * np.stack([u, v])
    matrix = np.hstack([a, (-a @ origin)[:, None]])
    mask = np.zeros((ch, cw), np.uint8)
    canvas_outline = np.asarray(outline, np.float64) @ a.T + matrix[:, 2]
    cv2.fillPoly(mask, [np.round(canvas_outline - 0.5).astype(np.int32)], 255)
    return RoiView(matrix, (cw, ch), mask, np.asarray(outline, np.float64), frame_size)


def locate(
    frame: np.ndarray, roi: Roi | None, scale: float | None, min_side: int = 1
) -> RoiView:
    """Where ``roi`` lies in ``frame`` and its canvas.

    Args:
        frame: the frame (any type ``models.preprocess`` accepts).
        roi: the recipe's ROI; None inspects the whole frame.
        scale: canvas px per frame px (inspection pitch); None fits the ROI's long side to
            ``min_side`` (one squashed model input, no tiling).
        min_side: the canvas is at least this many px each way (one tile); the extra is
            frame around the ROI, masked off.

    Raises:
        ImageError: ``auto`` found no cell.
    """
    fh, fw = frame.shape[:2]
    if roi is None or roi.mode == "rect":
        x, y, w, h = roi.rect if roi is not None else (0, 0, fw, fh)  # type: ignore[misc]
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(fw, x + w), min(fh, y + h)
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ImageError(f"the ROI {roi.rect} lies outside the {fw}x{fh} frame")  # type: ignore[union-attr]
        outline = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        u, v, width, height = np.array([1.0, 0.0]), np.array([0.0, 1.0]), x1 - x0, y1 - y0
    elif roi.mode == "polygon":
        outline = np.asarray(roi.polygon, np.float64)
        x0, y0 = np.clip(outline.min(axis=0), 0, None)
        x1, y1 = np.minimum(outline.max(axis=0), [fw, fh])
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ImageError(f"the ROI polygon lies outside the {fw}x{fh} frame")
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        u, v, width, height = np.array([1.0, 0.0]), np.array([0.0, 1.0]), x1 - x0, y1 - y0
    else:
        (cx, cy), (rw, rh), angle = find_cell(frame, roi.min_area)
        centre, u, v, width, height = _upright_axes(((cx, cy), (rw, rh), angle))
        width *= 1 + 2 * roi.margin
        height *= 1 + 2 * roi.margin
        outline = np.array(
            [centre + su * u * width / 2 + sv * v * height / 2
             for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        )
    if scale is None:
        scale = min_side / max(width, height)
        min_side = 1
    return _view(centre, u, v, width, height, scale, min_side, outline, (fw, fh))


def extract(frame: np.ndarray, view: RoiView) -> np.ndarray:
    """The ROI's upright canvas, cut from ``frame`` (same dtype and channels)."""
    matrix = view.matrix
    src = frame
    s = view.scale
    if s < AREA_AA_BELOW:  # shrink the ROI's bounding box by area first: warps alias
        cw, ch = view.size
        corners = view.canvas_to_frame(np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]]))
        fh, fw = frame.shape[:2]
        x0, y0 = (max(0, math.floor(c) - 2) for c in corners.min(axis=0))
        x1, y1 = (min(n, math.ceil(c) + 2) for n, c in zip((fw, fh), corners.max(0), strict=True))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            crop = frame[y0:y1, x0:x1]
            sw, sh = max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s))
            src = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)
            sx, sy = sw / (x1 - x0), sh / (y1 - y0)
            a = matrix[:, :2] @ np.diag([1 / sx, 1 / sy])
            matrix = np.hstack([a, (matrix[:, :2] @ [x0, y0] + matrix[:, 2])[:, None]])
    out = cv2.warpAffine(
        src, _pixel_matrix(matrix), view.size, flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    if frame.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def to_frame(canvas_map: np.ndarray, view: RoiView, map_shape: tuple[int, int]) -> np.ndarray:
    """A canvas-sized map -> a map over the whole frame of ``map_shape`` ``(h, w)``.

    The frame map may be coarser than the frame (``models.preprocess.resize_map`` brings it to
    full size); values outside the ROI are 0.
    """
    fh_map, fw_map = map_shape
    masked = np.where(view.mask > 0, canvas_map, 0.0).astype(np.float32)
    # canvas <- frame px <- map px
    frame_w, frame_h = view.frame_size
    to_frame_px = np.diag([frame_w / fw_map, frame_h / fh_map])
    a = view.matrix[:, :2] @ to_frame_px
    matrix = np.hstack([a, view.matrix[:, 2:]])
    return cv2.warpAffine(
        masked, _pixel_matrix(matrix), (fw_map, fh_map),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )


def parse_roi(text: str) -> Roi:
    """``--roi`` as given on the command line: ``auto``, ``x,y,w,h`` in frame px, or the path
    of a polygon file (JSON ``[[x, y], ...]`` in frame px).

    Raises:
        ValueError: none of those.
    """
    text = text.strip()
    if text == "auto":
        return Roi(mode="auto")
    parts = text.split(",")
    if len(parts) == 4:
        try:
            return Roi(mode="rect", rect=[int(p) for p in parts])
        except ValueError as exc:
            raise ValueError(f"--roi {text!r}: x,y,w,h must be whole pixels, w and h > 0") from exc
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"--roi {text!r} is not 'auto', 'x,y,w,h' or a polygon file")
    try:
        points = json.loads(path.read_text(encoding="utf-8"))
        return Roi(mode="polygon", polygon=points)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a JSON list of [x, y] frame-pixel points: {exc}") from exc
