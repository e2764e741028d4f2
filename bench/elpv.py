"""The real-image splits of bench/accuracy.py: electroluminescence images of solar cells.

From the ``elpv-dataset`` package (2,624 300x300 cells, mono- and polycrystalline, each
labelled with a defect probability 0, 1/3, 2/3 or 1). A split of one kind, written in MVTec
layout:

- draw 0 ("first"): references = the first 24 cells of that kind with probability 0, in
  ``labels.csv`` order; test/good = the next 150 such cells; test/crack = the first 150 cells
  of that kind with probability 1.
- draw d > 0: the probability-0 cells of that kind shuffled with ``numpy.random.
  default_rng(d)``; references = the first 24, test/good = the next 150; test/crack as above.

Cells with probability 1/3 or 2/3 are used nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_REFS, N_GOOD, N_BAD = 24, 150, 150
KINDS = ("mono", "poly")


@dataclass
class Split:
    """One written split: MVTec root, its reference images and its labelled test images."""

    root: Path
    references: list[Path]
    test: list[tuple[Path, int]]


def _labels() -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    import elpv_dataset  # the dev extra

    data = Path(elpv_dataset.__file__).parent / "data"
    rows = np.genfromtxt(
        data / "labels.csv", dtype=["|S19", "<f8", "|S4"], names=["path", "prob", "type"]
    )
    return data, np.char.decode(rows["path"]), rows["prob"], np.char.decode(rows["type"])


def write_split(kind: str, draw: int, out: Path) -> Split:
    """Write one split (as symlinks to the package's PNGs) under ``out``; see the module doc."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    data, paths, prob, types = _labels()
    good = np.flatnonzero((types == kind) & (prob == 0.0))
    bad = np.flatnonzero((types == kind) & (prob == 1.0))[:N_BAD]
    if draw:
        good = np.random.default_rng(draw).permutation(good)
    refs, test_good = good[:N_REFS], good[N_REFS : N_REFS + N_GOOD]

    def place(indices: np.ndarray, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        placed = []
        for i in indices:
            dst = folder / Path(paths[i]).name
            if not dst.exists():
                dst.symlink_to(data / paths[i])
            placed.append(dst)
        return placed

    references = place(refs, out / "train" / "good")
    test = [(p, 0) for p in place(test_good, out / "test" / "good")]
    test += [(p, 1) for p in place(bad, out / "test" / "crack")]
    return Split(out, references, test)
