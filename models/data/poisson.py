"""Synthetic defects by Poisson image editing, and the training set built from them.

The detector learns from normal images only (BatteryGPT, after AnomalyGPT): a patch cut from
*another* normal image, under a random rectangle / ellipse / polygon mask, is blended into a
normal image at a random place and scale with ``cv2.seamlessClone``. Poisson blending keeps
the boundary seamless, so the network has to notice texture and structure, not a pasted
edge. The label is where the blend really changed the pixels (thresholded absolute
difference); a blend that changes nothing is a normal sample. Few normal images are stretched
by affine augmentation (mirror, rotation, scale, shift).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from models.preprocess import preprocess, to_unit_float, validate_frame

MASK_SHAPES = ("rectangle", "ellipse", "polygon")
DEFAULT_THRESHOLD = 8  # gray levels (of 255) a pixel must change by to count as defective
DEFAULT_MIN_AREA = 8  # changed pixels below which a blend counts as "changed nothing"


def to_uint8(image: np.ndarray, bit_depth: int | None = None) -> np.ndarray:
    """Any supported frame -> 8-bit, keeping gray as gray and colour as BGR."""
    image = validate_frame(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype == np.uint8:
        return image
    return np.round(to_unit_float(image, bit_depth) * 255.0).astype(np.uint8)


def own_range(image: np.ndarray, bit_depth: int | None = None) -> tuple[np.ndarray, float, float]:
    """A frame stretched to 8 bits over its own dynamic range, and how to undo that.

    Returns ``(u8, lo, span)``: the model sees ``lo + span * u8 / 255`` (in [0, 1], as
    ``preprocess`` scales the frame). 8-bit frames stay as they are (``lo 0``, ``span 1``);
    deeper ones are stretched between their 0.1 and 99.9 percentiles, so the synthetic-defect
    label rule (grey levels of 255) works in the frame's own range even when the recipe's bit
    depth makes the frame dark (a Mono12 frame scaled by 65535 spans 16 grey levels).
    """
    image = validate_frame(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype == np.uint8:
        return image, 0.0, 1.0
    f = to_unit_float(image, bit_depth)
    lo, hi = (float(v) for v in np.percentile(f, (0.1, 99.9)))
    span = max(hi - lo, 1e-6)
    u8 = np.round(np.clip((f - lo) / span, 0.0, 1.0) * 255.0).astype(np.uint8)
    return u8, lo, span


def random_mask(
    rng: np.random.Generator, height: int, width: int, shape: str | None = None
) -> np.ndarray:
    """A filled rectangle (rotated), ellipse or star-shaped polygon inside a ``height x width``
    patch, uint8 0/255, with a 2-px empty border (seamlessClone needs one)."""
    shape = shape or str(rng.choice(MASK_SHAPES))
    if shape not in MASK_SHAPES:
        raise ValueError(f"mask shape must be one of {MASK_SHAPES}, got {shape!r}")
    mask = np.zeros((height, width), np.uint8)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    rx, ry = max(1.0, width / 2 - 2), max(1.0, height / 2 - 2)
    if shape == "rectangle":
        w, h = rx * 2 * rng.uniform(0.5, 1.0), ry * 2 * rng.uniform(0.5, 1.0)
        box = cv2.boxPoints(((cx, cy), (w, h), float(rng.uniform(-30, 30))))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 255)
    elif shape == "ellipse":
        axes = (max(1, int(rx * rng.uniform(0.5, 1.0))), max(1, int(ry * rng.uniform(0.5, 1.0))))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    else:
        n = int(rng.integers(5, 11))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.4, 1.0, n)
        pts = np.stack([cx + rx * radii * np.cos(angles), cy + ry * radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255)
    mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = 0, 0, 0, 0
    return mask


def _as_bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


def changed_region(before: np.ndarray, after: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 0/1 map of pixels whose value (any channel) moved by more than ``threshold``."""
    diff = cv2.absdiff(before, after)
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    return (diff > threshold).astype(np.uint8)


def poisson_blend(
    target: np.ndarray,
    patch: np.ndarray,
    mask: np.ndarray,
    center: tuple[int, int],
) -> np.ndarray:
    """``cv2.seamlessClone`` of ``patch`` under ``mask`` centred at ``center`` (x, y) of
    ``target``, allowed to hang over the image border.

    OpenCV refuses a clone whose box leaves the destination, so the target is padded by
    reflection, blended there and cropped back: the part of the defect outside the frame is
    simply cut off, as it would be by a camera.
    """
    h, w = target.shape[:2]
    ph, pw = mask.shape
    pad = max(ph, pw) // 2 + 4
    padded = cv2.copyMakeBorder(_as_bgr(target), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    # seamlessClone writes into its mask argument (OpenCV 5.0 too): a reused mask shrinks and
    # the next blend silently changes nothing, hence the copy
    at = (int(center[0]) + pad, int(center[1]) + pad)
    blended = cv2.seamlessClone(_as_bgr(patch), padded, mask.copy(), at, cv2.NORMAL_CLONE)
    blended = blended[pad : pad + h, pad : pad + w]
    return cv2.cvtColor(blended, cv2.COLOR_BGR2GRAY) if target.ndim == 2 else blended


def synthetic_defect(
    target: np.ndarray,
    source: np.ndarray,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.1, 0.4),
    threshold: float = DEFAULT_THRESHOLD,
    min_area: int = DEFAULT_MIN_AREA,
    shape: str | None = None,
    region: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Blend a random patch of ``source`` into ``target``.

    Args:
        target: the normal image to damage (uint8, gray or BGR).
        source: another normal image the patch is cut from (same type; any size).
        rng: source of all randomness (patch size, aspect, crop, zoom, mask, place).
        scale: patch side as a fraction of the target's shorter side.
        threshold: gray levels a pixel must change by to be labelled defective.
        min_area: fewer changed pixels than this and the blend counts as changing nothing.
        shape: force a mask shape (``MASK_SHAPES``); random when None.
        region: where the defect's centre may fall (nonzero pixels, target size); anywhere in
            the image when None or empty (see ``foreground``).

    Returns:
        ``(image, label, is_defect)``: label is uint8 0/1 at the target's size, exactly the
        pixels that changed by more than ``threshold``. When the blend changed (almost)
        nothing, the unchanged target, an empty label and ``False`` come back.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a = rng.integers(0, 255, (64, 64), dtype=np.uint8)
        >>> img, label, ok = synthetic_defect(a, 255 - a, rng)
        >>> img.shape, label.shape, bool(ok)
        ((64, 64), (64, 64), True)
    """
    if target.dtype != np.uint8 or source.dtype != np.uint8:
        raise ValueError("synthetic_defect needs 8-bit images (see to_uint8)")
    if target.ndim != source.ndim:
        source = cv2.cvtColor(
            source, cv2.COLOR_BGR2GRAY if source.ndim == 3 else cv2.COLOR_GRAY2BGR
        )
    h, w = target.shape[:2]
    side = min(h, w) * rng.uniform(*scale)
    aspect = rng.uniform(0.5, 2.0)
    ph = int(np.clip(round(side * np.sqrt(aspect)), 8, h))
    pw = int(np.clip(round(side / np.sqrt(aspect)), 8, w))
    # cut a zoomed crop of the source and bring it to the patch size
    sh, sw = source.shape[:2]
    zoom = rng.uniform(0.6, 1.6)
    ch, cw = min(sh, max(2, round(ph * zoom))), min(sw, max(2, round(pw * zoom)))
    y0, x0 = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
    patch = cv2.resize(source[y0 : y0 + ch, x0 : x0 + cw], (pw, ph), interpolation=cv2.INTER_LINEAR)
    mask = random_mask(rng, ph, pw, shape)
    if region is not None and region.any():
        ys, xs = np.nonzero(region)
        pick = int(rng.integers(ys.size))
        center = (int(xs[pick]), int(ys[pick]))
    else:
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    if not mask.any():
        return target.copy(), np.zeros((h, w), np.uint8), False
    out = poisson_blend(target, patch, mask, center)
    label = changed_region(target, out, threshold)
    if int(label.sum()) < min_area:
        return target.copy(), np.zeros((h, w), np.uint8), False
    return out, label, True


def foreground(image: np.ndarray) -> np.ndarray:
    """The part in the picture, roughly: the largest bright connected area after Otsu's
    threshold of the blurred image, uint8 0/1. Defects belong on the part, not on the belt or
    the scanner's background; the whole image when no clear part stands out."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    blur = cv2.GaussianBlur(gray, (0, 0), max(1.0, gray.shape[0] / 100))
    _, fg = cv2.threshold(blur, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n < 2:
        return np.ones(gray.shape, np.uint8)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    part = (labels == best).astype(np.uint8)
    if part.mean() < 0.1 or part.mean() > 0.95:  # nothing that looks like a part on a background
        return np.ones(gray.shape, np.uint8)
    return part


def affine_augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random mirror, small rotation (+-5 deg), scale (0.95-1.05) and shift (+-3 %) with
    replicated borders: the pose jitter of a part on a fixture, to stretch a handful of normal
    images into many. (No vertical flip: tabs stay where the station sees them.)"""
    h, w = image.shape[:2]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-5, 5), rng.uniform(0.95, 1.05))
    m[0, 2] += rng.uniform(-0.03, 0.03) * w
    m[1, 2] += rng.uniform(-0.03, 0.03) * h
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        m,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


class SyntheticDefectSet(Dataset):
    """Training samples from a few normal images, balanced 1:1: even indices are (augmented)
    normal images, odd indices carry a Poisson synthetic defect.

    Every sample is a pure function of ``(seed, epoch, index)``, so a run (and a resumed run)
    sees the same data. Images are brought to the model's input size first, as inference does.
    Items are tensors ``(x float32 [3, S, S], label float32 [S, S], is_defect float32 [])``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> ims = [rng.integers(0, 255, (80, 120), dtype=np.uint8) for _ in range(2)]
        >>> ds = SyntheticDefectSet(ims, size=64, length=4)
        >>> x, y, d = ds[1]; tuple(x.shape), tuple(y.shape), float(d)
        ((3, 64, 64), (64, 64), 1.0)
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        size: int = 224,
        length: int | None = None,
        seed: int = 0,
        bit_depth: int | None = None,
        augment: bool = True,
        threshold: float = DEFAULT_THRESHOLD,
        on_part: bool = True,
    ) -> None:
        if not images:
            raise ValueError("need at least one normal image to synthesise defects from")
        self.size = size
        self.images, self.ranges = [], []
        for im in images:
            u8, lo, span = own_range(im, bit_depth)
            self.images.append(cv2.resize(u8, (size, size), interpolation=cv2.INTER_AREA))
            self.ranges.append((lo, span))
        if len({im.ndim for im in self.images}) > 1:
            self.images = [_as_bgr(im) for im in self.images]
        self.length = length if length is not None else max(64, 2 * len(images))
        self.seed = seed
        self.epoch = 0
        self.augment = augment
        self.threshold = threshold
        self.on_part = on_part

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _normal(self, rng: np.random.Generator, k: int) -> np.ndarray:
        im = self.images[k]
        return affine_augment(im, rng) if self.augment else im.copy()

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """The uint8 image (in its frame's own range), its 0/1 label and whether it is
        defective."""
        return self._sample(index)[:3]

    def _sample(self, index: int) -> tuple[np.ndarray, np.ndarray, bool, int]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        n = len(self.images)
        k = int(rng.integers(n))
        image = self._normal(rng, k)
        empty = np.zeros((self.size, self.size), np.uint8)
        if index % 2 == 0:
            return image, empty, False, k
        region = foreground(image) if self.on_part else None
        for _ in range(5):  # keep the 1:1 balance when a blend happens to change nothing
            j = (k + int(rng.integers(1, n))) % n if n > 1 else k  # another image when there is one
            out, label, ok = synthetic_defect(
                image, self._normal(rng, j), rng, threshold=self.threshold, region=region
            )
            if ok:
                return out, label, True, k
        return image, empty, False, k

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, label, is_defect, k = self._sample(index)
        lo, span = self.ranges[k]
        x = (lo + span * preprocess(image, self.size)).astype(np.float32)  # as the station sees
        x = torch.from_numpy(x)
        return x, torch.from_numpy(label.astype(np.float32)), torch.tensor(float(is_defect))
