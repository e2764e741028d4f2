"""Reading datasets in the MVTec AD layout, with or without pixel masks.

Layout::

    ROOT/train/good/*.png                      normal images for training / references
    ROOT/test/good/*.png                       normal test images
    ROOT/test/<defect>/*.png                   defective test images
    ROOT/ground_truth/<defect>/<name>_mask.png pixel masks (optional)

A folder with image labels only (no ``ground_truth``) is a valid dataset: its samples carry
``mask_path=None`` and pixel metrics are skipped. No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from models.image_io import IMAGE_SUFFIXES, ImageError, list_images, read_image

GOOD = "good"
T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: its file, image label (1 = defective) and optional mask."""

    path: Path
    label: int
    defect: str  # "good" for normal images
    mask_path: Path | None = None

    def read(self) -> np.ndarray:
        return read_image(self.path)

    def read_mask(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """Binary uint8 mask (1 = defect) at ``shape[:2]``; zeros for a normal image.

        None when the image is defective but the dataset has no mask for it.
        """
        h, w = int(shape[0]), int(shape[1])
        if self.label == 0:
            return np.zeros((h, w), np.uint8)
        if self.mask_path is None:
            return None
        mask = read_image(self.mask_path)
        if mask.ndim == 3:
            mask = mask.max(axis=2)
        if mask.shape[:2] != (h, w):
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        return (mask > 0).astype(np.uint8)


def _mask_for(root: Path, defect: str, image: Path) -> Path | None:
    folder = root / "ground_truth" / defect
    for suffix in (image.suffix, ".png", *sorted(IMAGE_SUFFIXES)):
        candidate = folder / f"{image.stem}_mask{suffix}"
        if candidate.is_file():
            return candidate
    return None


def is_mvtec(root: str | Path) -> bool:
    """True when ``root`` has a ``train/good`` or ``test`` folder."""
    root = Path(root)
    return (root / "train" / GOOD).is_dir() or (root / "test").is_dir()


def train_images(root: str | Path) -> list[Path]:
    """The normal training images: ``ROOT/train/good``, or ``ROOT`` itself when it is a plain
    folder of images.

    Raises:
        ImageError: no such folder, or no images in it.
    """
    root = Path(root)
    if not root.is_dir():
        raise ImageError(f"{root}: not a directory")
    folder = root / "train" / GOOD if (root / "train" / GOOD).is_dir() else root
    paths = list_images(folder)
    if not paths:
        raise ImageError(f"{folder} contains no images (expected MVTec layout: train/good/*.png)")
    return paths


def load_test_split(root: str | Path) -> list[Sample]:
    """Every image under ``ROOT/test``, normal ones first, then each defect type by name.

    Raises:
        ImageError: ``ROOT/test`` is missing or holds no images.
    """
    root = Path(root)
    test = root / "test"
    if not test.is_dir():
        raise ImageError(f"{root} has no test/ folder (expected MVTec layout: test/good, ...)")
    samples: list[Sample] = []
    folders = sorted((p for p in test.iterdir() if p.is_dir()), key=lambda p: (p.name != GOOD, p))
    for folder in folders:
        defect = folder.name
        for path in list_images(folder):
            if defect == GOOD:
                samples.append(Sample(path, 0, GOOD))
            else:
                samples.append(Sample(path, 1, defect, _mask_for(root, defect, path)))
    if not samples:
        raise ImageError(f"{test} contains no images")
    return samples


def normal_folders(root: str | Path, include_train: bool = False) -> list[Path]:
    """Where calibration takes normal images from: ``test/good``, plus ``train/good`` when
    asked or when there is no ``test/good``; a plain folder itself.

    ``train/good`` is left out by default: those images trained the decoder or filled the
    memory bank, so they score lower than new cells and would make thresholds too strict.
    """
    root = Path(root)
    if not is_mvtec(root):
        return [root]
    test, train = root / "test" / GOOD, root / "train" / GOOD
    folders = [test, train] if include_train or not test.is_dir() else [test]
    return [f for f in folders if f.is_dir()]


def normal_images(root: str | Path, include_train: bool = False) -> list[Path]:
    """The images of ``normal_folders(root, include_train)``, in that order.

    Raises:
        ImageError: ``root`` is not a directory, or those folders hold no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise ImageError(f"{root}: not a directory")
    folders = normal_folders(root, include_train)
    paths = [p for folder in folders for p in list_images(folder)]
    if not paths:
        where = ", ".join(map(str, folders)) or f"{root} (no train/good or test/good)"
        raise ImageError(f"no normal images in {where}")
    return paths


def pick_evenly(items: Sequence[T], k: int) -> list[T]:
    """``k`` items spread evenly over ``items`` (all of them when there are not more than
    ``k``, or when ``k`` is not positive)."""
    if k <= 0 or len(items) <= k:
        return list(items)
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def defect_samples(root: str | Path) -> list[Sample]:
    """The labelled defective images of ``ROOT/test`` (empty for a plain folder)."""
    root = Path(root)
    if not (root / "test").is_dir():
        return []
    return [s for s in load_test_split(root) if s.label == 1]


def has_masks(samples: list[Sample]) -> bool:
    """True when every defective sample has a mask (pixel metrics are then meaningful)."""
    defective = [s for s in samples if s.label == 1]
    return bool(defective) and all(s.mask_path is not None for s in defective)
