"""Procedural battery images with pixel masks, for training, tests, benchmarks and the demo.

Two kinds, after the BatteryGPT paper's data:

- ``pouch``: an optical top view of a pouch cell on a dark belt: aluminium-laminate body with
  brushed foil texture, wrinkles and a lighting gradient, embossed sealed edges, two tabs.
  Defects: ``scratch``, ``dent``, ``particle``, ``edge_crack``.
- ``ultrasound``: an internal (C-scan like) ultrasound image of a pouch cell: layered electrode
  texture with speckle. Defects: ``bubble`` (one) and ``bubble_cluster`` (several).

Everything is drawn from ``numpy.random.Generator``s seeded per image, so a (seed, split,
index) triple always gives the same picture whatever else is generated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

KINDS = ("pouch", "ultrasound")
DEFECTS: dict[str, tuple[str, ...]] = {
    "pouch": ("scratch", "dent", "particle", "edge_crack"),
    "ultrasound": ("bubble", "bubble_cluster"),
}
DEFAULT_SIZE: dict[str, tuple[int, int]] = {"pouch": (512, 384), "ultrasound": (400, 400)}
MIN_SIDE, MAX_SIDE = 200, 700


@dataclass
class CellLayout:
    """Where the cell body and its sealed border lie in the image (x0, y0, x1, y1)."""

    body: tuple[int, int, int, int]
    seal: int


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-ish noise with features about ``cell`` pixels across."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    coarse = rng.normal(0.0, 1.0, (gh, gw)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _rounded_rect_mask(h: int, w: int, box: tuple[int, int, int, int], r: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    m = np.zeros((h, w), np.uint8)
    cv2.rectangle(m, (x0 + r, y0), (x1 - r, y1), 255, -1)
    cv2.rectangle(m, (x0, y0 + r), (x1, y1 - r), 255, -1)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        cv2.circle(m, (cx, cy), r, 255, -1, cv2.LINE_AA)
    return m


def pouch_cell(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, CellLayout]:
    """A normal pouch cell, 8-bit gray, and its layout."""
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    belt = 35 + 6 * _smooth_noise(rng, h, w, 30) + rng.normal(0, 3, (h, w))
    tab_h = int(h * rng.uniform(0.08, 0.11))
    mx, my = int(w * rng.uniform(0.07, 0.1)), int(h * rng.uniform(0.05, 0.08))
    body = (mx, my + tab_h, w - mx, h - my)
    seal = max(5, int(min(w, h) * rng.uniform(0.05, 0.07)))

    # brushed aluminium laminate: anisotropic noise, wrinkles, lighting gradient, vignette
    brushed = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 6.0, sigmaY=0.7)
    wrinkles = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(2, 5)):
        angle, freq = rng.uniform(-0.4, 0.4), rng.uniform(0.01, 0.03)
        phase, amp = rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 4.0)
        wrinkles += amp * np.sin(freq * (xx * np.sin(angle) + yy * np.cos(angle)) * 6 + phase)
    gx, gy = rng.uniform(-0.12, 0.12), rng.uniform(-0.12, 0.12)
    light = 1 + gx * (xx / w - 0.5) * 2 + gy * (yy / h - 0.5) * 2
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)
    vignette = 1 - 0.18 * (((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2) * 4
    foil = rng.uniform(150, 175) + 10 * brushed + wrinkles + 5 * _smooth_noise(rng, h, w, 60)
    foil *= light * vignette

    # embossed seal: a fine stripe pattern along the border
    stripes = 8 * np.sin(xx * 1.3) * np.sin(yy * 1.3) + rng.normal(0, 4, (h, w))
    seal_img = (foil * 0.85 + stripes).astype(np.float32)

    img = belt.astype(np.float32)
    body_mask = _rounded_rect_mask(h, w, body, max(3, seal // 2)) > 0
    inner = (body[0] + seal, body[1] + seal, body[2] - seal, body[3] - seal)
    inner_mask = _rounded_rect_mask(h, w, inner, max(2, seal // 3)) > 0
    img[body_mask] = seal_img[body_mask]
    img[inner_mask] = foil[inner_mask]
    shade = cv2.GaussianBlur(inner_mask.astype(np.float32), (0, 0), 2.0)
    img -= 12 * (cv2.GaussianBlur(shade, (0, 0), 1.0) - shade) ** 2 * 40

    # two tabs on the top edge: aluminium (bright) and nickel-plated copper (darker)
    tab_w = int((body[2] - body[0]) * rng.uniform(0.13, 0.18))
    for i, centre in enumerate((0.3, 0.7)):
        tx = int(body[0] + (body[2] - body[0]) * (centre + rng.uniform(-0.03, 0.03)))
        x0, x1 = tx - tab_w // 2, tx + tab_w // 2
        level = rng.uniform(195, 215) if i == 0 else rng.uniform(135, 150)
        tab = (
            level
            + 6 * brushed[: body[1] + seal, x0:x1]
            + 3 * _smooth_noise(rng, body[1] + seal, x1 - x0, 10)
        )
        img[my : body[1] + seal, x0:x1] = tab[my:]
        img[body[1] - 2 : body[1] + seal, x0 - 3 : x1 + 3] = rng.uniform(55, 75)  # sealant
    img += rng.normal(0, 2.0, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8), CellLayout(body, seal)


def ultrasound_cell(
    rng: np.random.Generator, width: int, height: int
) -> tuple[np.ndarray, CellLayout]:
    """A normal ultrasound C-scan of a pouch cell, 8-bit gray, and its layout."""
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    m = int(min(w, h) * rng.uniform(0.04, 0.07))
    body = (m, m, w - m, h - m)
    seal = max(4, int(min(w, h) * 0.04))
    layers = np.zeros((h, w), np.float32)
    wave = 4 * _smooth_noise(rng, h, w, 80)
    for _ in range(5):
        freq, phase, amp = rng.uniform(0.05, 0.25), rng.uniform(0, 2 * np.pi), rng.uniform(4, 9)
        layers += amp * np.sin(freq * (yy + wave) + phase)
    speckle = rng.rayleigh(1.0, (h, w)).astype(np.float32)
    speckle = cv2.GaussianBlur(speckle, (0, 0), 1.1)
    base = rng.uniform(105, 125) + layers + 12 * _smooth_noise(rng, h, w, 50)
    img = base * (0.6 + 0.4 * speckle)
    body_mask = _rounded_rect_mask(h, w, body, seal) > 0
    edge = cv2.GaussianBlur(body_mask.astype(np.float32), (0, 0), seal / 2)
    img = img * (0.45 + 0.55 * edge)
    img[~body_mask] = 12 + rng.normal(0, 3, int((~body_mask).sum()))
    return np.clip(img, 0, 255).astype(np.uint8), CellLayout(body, seal)


def _inner_point(rng: np.random.Generator, layout: CellLayout, margin: int) -> tuple[int, int]:
    x0, y0, x1, y1 = layout.body
    lo_x, hi_x = x0 + layout.seal + margin, x1 - layout.seal - margin
    lo_y, hi_y = y0 + layout.seal + margin, y1 - layout.seal - margin
    return int(rng.integers(lo_x, max(lo_x + 1, hi_x))), int(
        rng.integers(lo_y, max(lo_y + 1, hi_y))
    )


def _scratch(rng, img, layout):
    mask = np.zeros(img.shape, np.uint8)
    x, y = _inner_point(rng, layout, 20)
    angle, pts = rng.uniform(0, 2 * np.pi), [(x, y)]
    for _ in range(rng.integers(6, 14)):
        angle += rng.normal(0, 0.25)
        step = rng.uniform(6, 14)
        x, y = x + step * np.cos(angle), y + step * np.sin(angle)
        pts.append((int(x), int(y)))
    cv2.polylines(mask, [np.array(pts, np.int32)], False, 255, int(rng.integers(2, 4)), cv2.LINE_AA)
    mask &= _body_interior(img.shape, layout)
    delta = rng.choice([-1, 1]) * rng.uniform(55, 85)
    return mask, delta * cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.7)


def _dent(rng, img, layout):
    r = int(rng.uniform(10, 24))
    x, y = _inner_point(rng, layout, r + 2)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(np.float32)
    rx, ry = r * rng.uniform(0.8, 1.3), r * rng.uniform(0.8, 1.3)
    d = ((xx - x) / rx) ** 2 + ((yy - y) / ry) ** 2
    inside = d < 1
    angle = rng.uniform(0, 2 * np.pi)
    slope = ((xx - x) * np.cos(angle) + (yy - y) * np.sin(angle)) / r
    change = np.where(inside, 65 * slope * (1 - d) - 30 * (1 - d), 0).astype(np.float32)
    mask = (np.abs(change) > 6).astype(np.uint8) * 255
    return mask, change


def _particle(rng, img, layout):
    mask = np.zeros(img.shape, np.uint8)
    x, y = _inner_point(rng, layout, 12)
    for _ in range(rng.integers(1, 4)):
        r = int(rng.uniform(3, 8))
        n = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = r * rng.uniform(0.6, 1.3, n)
        px = x + rng.integers(-10, 11) + radii * np.cos(angles)
        py = y + rng.integers(-10, 11) + radii * np.sin(angles)
        cv2.fillPoly(mask, [np.stack([px, py], 1).astype(np.int32)], 255, cv2.LINE_AA)
    shadow = cv2.GaussianBlur(np.roll(mask, (3, 3), (0, 1)).astype(np.float32) / 255, (0, 0), 2)
    change = -rng.uniform(90, 120) * (mask.astype(np.float32) / 255) - 25 * shadow
    return ((mask > 0) | (shadow > 0.2)).astype(np.uint8) * 255, change


def _edge_crack(rng, img, layout):
    mask = np.zeros(img.shape, np.uint8)
    x0, y0, x1, y1 = layout.body
    side = rng.integers(0, 4)
    length = rng.uniform(2.0, 4.0) * layout.seal
    if side == 0:
        x, y, angle = rng.uniform(x0 + 20, x1 - 20), y1, -np.pi / 2
    elif side == 1:
        x, y, angle = x0, rng.uniform(y0 + 20, y1 - 20), 0.0
    elif side == 2:
        x, y, angle = x1, rng.uniform(y0 + 20, y1 - 20), np.pi
    else:
        x, y, angle = rng.uniform(x0 + 20, x1 - 20), y1, -np.pi / 2
    pts, walked = [(int(x), int(y))], 0.0
    while walked < length:
        a = angle + rng.normal(0, 0.5)
        step = rng.uniform(3, 6)
        x, y, walked = x + step * np.cos(a), y + step * np.sin(a), walked + step
        pts.append((int(x), int(y)))
    cv2.polylines(mask, [np.array(pts, np.int32)], False, 255, int(rng.integers(2, 4)))
    mask &= _rounded_rect_mask(*img.shape, layout.body, max(3, layout.seal // 2))
    change = -rng.uniform(80, 110) * cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.6)
    return mask, change


def _bubble_at(img_shape, x, y, r, rng):
    yy, xx = np.mgrid[0 : img_shape[0], 0 : img_shape[1]].astype(np.float32)
    d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2) / r
    rim = np.exp(-(((d - 1.0) / 0.18) ** 2))
    core = np.clip(1 - d, 0, 1) ** 0.5
    change = rng.uniform(60, 90) * rim - rng.uniform(35, 55) * core
    mask = (d < 1.15).astype(np.uint8) * 255
    return mask, change.astype(np.float32)


def _bubble(rng, img, layout):
    r = rng.uniform(9, 22)
    x, y = _inner_point(rng, layout, int(r) + 2)
    return _bubble_at(img.shape, x, y, r, rng)


def _bubble_cluster(rng, img, layout):
    x, y = _inner_point(rng, layout, 30)
    mask = np.zeros(img.shape, np.uint8)
    change = np.zeros(img.shape, np.float32)
    for _ in range(rng.integers(3, 7)):
        r = rng.uniform(4, 9)
        m, c = _bubble_at(img.shape, x + rng.normal(0, 12), y + rng.normal(0, 12), r, rng)
        mask |= m
        change += c
    return mask, change


def _body_interior(shape, layout: CellLayout) -> np.ndarray:
    x0, y0, x1, y1 = layout.body
    inner = (x0 + layout.seal, y0 + layout.seal, x1 - layout.seal, y1 - layout.seal)
    return _rounded_rect_mask(*shape, inner, max(2, layout.seal // 3))


DefectFn = Callable[[np.random.Generator, np.ndarray, CellLayout], tuple[np.ndarray, np.ndarray]]
_DEFECT_FNS: dict[str, DefectFn] = {
    "scratch": _scratch,
    "dent": _dent,
    "particle": _particle,
    "edge_crack": _edge_crack,
    "bubble": _bubble,
    "bubble_cluster": _bubble_cluster,
}
_CELL_FNS = {"pouch": pouch_cell, "ultrasound": ultrasound_cell}


def render(
    kind: str,
    seed: int | list[int],
    size: tuple[int, int] | None = None,
    defect: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One image and its mask (uint8, 255 = defect; all zero for a normal image).

    Args:
        kind: ``"pouch"`` or ``"ultrasound"``.
        seed: anything ``numpy.random.default_rng`` takes; equal seeds give equal images.
        size: ``(width, height)``; the kind's default when None.
        defect: one of ``DEFECTS[kind]``, or None for a normal cell.

    Example:
        >>> img, mask = render("pouch", 0, defect="scratch")
        >>> img.shape, bool(mask.any())
        ((384, 512), True)
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if defect is not None and defect not in DEFECTS[kind]:
        raise ValueError(f"{kind} defects are {DEFECTS[kind]}, got {defect!r}")
    width, height = size or DEFAULT_SIZE[kind]
    rng = np.random.default_rng(seed)
    img, layout = _CELL_FNS[kind](rng, width, height)
    mask = np.zeros(img.shape, np.uint8)
    if defect is not None:
        mask, change = _DEFECT_FNS[defect](rng, img, layout)
        img = np.clip(img.astype(np.float32) + change, 0, 255).astype(np.uint8)
        mask = (mask > 0).astype(np.uint8) * 255
    return img, mask


def write_dataset(
    out: str | Path,
    kind: str,
    n_train: int = 20,
    n_test_good: int = 20,
    n_test_defect: int = 10,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    progress: bool = False,
) -> dict[str, int]:
    """Write an MVTec-layout dataset; returns the number of images per folder.

    ``n_test_defect`` images are made per defect type. Layout: ``train/good``, ``test/good``,
    ``test/<defect>``, ``ground_truth/<defect>/<name>_mask.png``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if size is not None and not all(MIN_SIDE <= s <= MAX_SIDE for s in size):
        raise ValueError(f"size must be within {MIN_SIDE}..{MAX_SIDE} px per side, got {size}")
    out = Path(out)
    jobs: list[tuple[str, str | None, int, int]] = []
    jobs += [("train/good", None, 0, i) for i in range(n_train)]
    jobs += [("test/good", None, 1, i) for i in range(n_test_good)]
    for d_i, defect in enumerate(DEFECTS[kind]):
        jobs += [(f"test/{defect}", defect, 2 + d_i, i) for i in range(n_test_defect)]
    counts: dict[str, int] = {}
    for folder, defect, split_id, i in tqdm(jobs, desc=f"synth {kind}", disable=not progress):
        img, mask = render(kind, [seed, split_id, i], size, defect)
        name = f"{i:04d}"
        (out / folder).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / folder / f"{name}.png"), img)
        if defect is not None:
            (out / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / "ground_truth" / defect / f"{name}_mask.png"), mask)
        counts[folder] = counts.get(folder, 0) + 1
    return counts


# --- full-resolution line frames: a cell placed on a belt/fixture, defects sized in mm --------

FRAME_SIZE = (2448, 2048)  # (width, height): a 5 MP line-scan/area camera frame
FRAME_PITCH_MM = 0.05  # mm per frame pixel, as the engineer guide's example station
CELL_MM = (80.0, 66.0)  # (width, height) of the rendered cell image (body, seal, tabs, margin)
SIZED_DEFECTS = ("particle", "pinhole", "scratch")


def _belt_and_fixture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A dark conveyor belt with weave texture and two grey fixture rails with bolt holes."""
    belt = 32 + 5 * _smooth_noise(rng, h, w, 40) + rng.normal(0, 3, (h, w))
    weave = 3 * np.sin(np.arange(w, dtype=np.float32) * 0.9)[None, :]
    img = (belt + weave).astype(np.float32)
    rail = int(w * 0.045)
    for x0 in (int(w * 0.01), w - int(w * 0.01) - rail):
        img[:, x0 : x0 + rail] = 78 + 4 * _smooth_noise(rng, h, rail, 20)
        for y in range(rail, h, 4 * rail):
            cv2.circle(img, (x0 + rail // 2, y), rail // 4, 20.0, -1, cv2.LINE_AA)
    return img


def _cell_mask(img: np.ndarray, layout: CellLayout) -> np.ndarray:
    """Where the rendered cell (body and tabs) is, as float in [0, 1]."""
    h, w = img.shape
    body = _rounded_rect_mask(h, w, layout.body, max(3, layout.seal // 2)) > 0
    tabs = np.zeros_like(body)
    tabs[: layout.body[1] + layout.seal] = img[: layout.body[1] + layout.seal] > 100
    tabs = cv2.morphologyEx(tabs.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)) > 0
    return cv2.GaussianBlur((body | tabs).astype(np.float32), (0, 0), 0.8)


def _sized_defect(
    rng: np.random.Generator, shape: tuple[int, int], layout: CellLayout, kind: str, size_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """A defect of ``size_px`` across (a scratch: long) inside the body: (mask, grey change)."""
    h, w = shape
    margin = int(size_px / 2) + 8
    x, y = _inner_point(rng, layout, margin)
    mask = np.zeros((h, w), np.uint8)
    if kind == "scratch":
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * size_px / 2, np.sin(angle) * size_px / 2
        bend = rng.normal(0, 0.08) * size_px
        mid = (x - dy / size_px * bend * 2, y + dx / size_px * bend * 2)
        pts = np.array([(x - dx, y - dy), mid, (x + dx, y + dy)], np.float64)
        cv2.polylines(mask, [np.round(pts * 4).astype(np.int32)], False, 255, 2, cv2.LINE_AA,
                      shift=2)  # 2 px wide: 0.1 mm at 0.05 mm/px
        change = rng.choice([-1, 1]) * rng.uniform(60, 85)
        return mask, change * cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.6)
    if kind == "pinhole":
        cv2.circle(mask, (x * 4, y * 4), max(2, round(size_px * 2)), 255, -1, cv2.LINE_AA, shift=2)
        soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.6)
        rim = cv2.GaussianBlur(soft, (0, 0), max(1.0, size_px / 6)) - soft
        return mask, -rng.uniform(100, 125) * soft + 60 * np.clip(rim, 0, None)
    n = 7
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = size_px / 2 * rng.uniform(0.75, 1.15, n)
    poly = np.stack([x + radii * np.cos(angles), y + radii * np.sin(angles)], 1)
    cv2.fillPoly(mask, [np.round(poly * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
    soft = mask.astype(np.float32) / 255
    shift = max(1, round(size_px / 5))
    shadow = cv2.GaussianBlur(np.roll(soft, (shift, shift), (0, 1)), (0, 0), max(1.0, shift))
    return mask, -rng.uniform(90, 120) * soft - 25 * shadow


def pouch_frame(
    seed: int | list[int],
    defect: str | None = None,
    defect_mm: float = 1.0,
    angle_deg: float | None = None,
    offset_px: tuple[float, float] | None = None,
    size: tuple[int, int] = FRAME_SIZE,
    pitch_mm: float = FRAME_PITCH_MM,
) -> tuple[np.ndarray, np.ndarray]:
    """A line camera's frame of one pouch cell on a belt between fixture rails, with its mask.

    The cell is about ``CELL_MM`` large at ``pitch_mm`` mm per pixel, placed near the centre
    with a small random shift and tilt (or exactly ``offset_px`` from the centre and tilted by
    ``angle_deg``). ``defect`` (one of ``SIZED_DEFECTS``) is ``defect_mm`` across (a scratch
    that long) on the cell's foil.

    Example:
        >>> img, mask = pouch_frame(0, "particle", 0.5, size=(640, 512), pitch_mm=0.2)
        >>> img.shape, bool(mask.any())
        ((512, 640), True)
    """
    if defect is not None and defect not in SIZED_DEFECTS:
        raise ValueError(f"sized defects are {SIZED_DEFECTS}, got {defect!r}")
    rng = np.random.default_rng(seed)
    fw, fh = size
    cw, ch = (round(mm / pitch_mm) for mm in CELL_MM)
    cell, layout = pouch_cell(rng, cw, ch)
    cell_alpha = _cell_mask(cell, layout)
    cell_f = cell.astype(np.float32)
    angle = rng.uniform(-3, 3) if angle_deg is None else angle_deg
    if offset_px is None:
        offset_px = (rng.uniform(-0.03, 0.03) * fw, rng.uniform(-0.03, 0.03) * fh)
    background = _belt_and_fixture(rng, fw, fh)
    dmask = np.zeros((ch, cw), np.uint8)
    if defect is not None:  # drawn last: the same seed gives the same cell, pose and belt
        dmask, change = _sized_defect(rng, (ch, cw), layout, defect, defect_mm / pitch_mm)
        cell_f = np.clip(cell_f + change, 0, 255)
    m = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, 1.0)
    m[:, 2] += (fw / 2 + offset_px[0] - cw / 2, fh / 2 + offset_px[1] - ch / 2)
    warp = dict(dsize=(fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    cell_w = cv2.warpAffine(cell_f, m, **warp)
    alpha = cv2.warpAffine(cell_alpha, m, **warp)
    mask = cv2.warpAffine(dmask, m, **warp)
    img = background * (1 - alpha) + cell_w * alpha
    return np.clip(img, 0, 255).astype(np.uint8), (mask > 127).astype(np.uint8) * 255
