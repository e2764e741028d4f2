"""Shared fixtures: small textured images and a tiny bundle built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, foil-like 8-bit gray texture; the same seed gives the same image."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, (height // 8 + 2, width // 8 + 2)).astype(np.float32)
    base = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0.0, 0.15, (height, width)).astype(np.float32)
    img = 128 + 30 * base + 30 * fine
    return np.clip(img, 0, 255).astype(np.uint8)


def paste_foreign(image: np.ndarray, box: tuple[int, int, int, int], seed: int = 99) -> np.ndarray:
    """``image`` with a high-contrast checkerboard-noise patch pasted at ``box`` (x, y, w, h)."""
    x, y, w, h = box
    rng = np.random.default_rng(seed)
    out = image.copy()
    yy, xx = np.mgrid[0:h, 0:w]
    checker = (((xx // 4) + (yy // 4)) % 2 * 200 + 25).astype(np.float32)
    out[y : y + h, x : x + w] = np.clip(checker + rng.normal(0, 20, (h, w)), 0, 255).astype(
        np.uint8
    )
    return out


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("references")
    for i in range(4):
        cv2.imwrite(str(folder / f"good_{i}.png"), textured(301, 457, seed=i))
    return folder


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    """A tiny-architecture bundle with 4 reference images (random encoder weights, seed 0)."""
    from models.bundle import create_bundle
    from models.image_io import list_images, read_image

    out = tmp_path_factory.mktemp("bundle") / "tiny"
    refs = [read_image(p) for p in list_images(reference_dir)]
    create_bundle(out, "tiny", "pouch cell", reference_images=refs, seed=0)
    return out


@pytest.fixture(scope="session")
def effnet_bundle(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    """A bundle of the default pretrained backbone with the same 4 reference images."""
    from models.bundle import create_bundle
    from models.image_io import list_images, read_image

    out = tmp_path_factory.mktemp("bundle") / "effnet"
    refs = [read_image(p) for p in list_images(reference_dir)]
    create_bundle(out, "effnet-lite0", "pouch cell", reference_images=refs)
    return out
