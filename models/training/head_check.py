"""After training: put the decoder's map on the references' scale and keep it only if it helps.

The trained head (decoder) and the memory bank are fused on one scale: the decoder's abnormal
probability is divided by its largest value on the normal training images (``text_scale``),
as the bank divides by its leave-one-out distance. Both fusions are then scored on a held-out
set of Poisson synthetic defects (never seen in training: another seed), and the bundle keeps
the better one, so ``inspector train`` improves on the memory bank alone or says it did not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.bundle import text_scale
from models.data.metrics import pixel_auroc
from models.data.poisson import SyntheticDefectSet
from models.detector import BatteryDetector

HELD_OUT_SEED = 7919  # any seed training does not use
HELD_OUT_SAMPLES = 32


@dataclass
class HeadCheck:
    """What the check measured and chose."""

    text_scale: float
    pixel_auroc: dict[str, float]  # fusion -> pixel AUROC on held-out synthetic defects
    fusion: str

    def summary(self) -> str:
        figures = ", ".join(f"{k} {v:.3f}" for k, v in self.pixel_auroc.items())
        if "memory" not in self.pixel_auroc:
            return f"decoder scale {self.text_scale:.4f}; held-out pixel AUROC: {figures}"
        verdict = (
            "the trained head improves on the memory bank alone: fusion 'mean' kept"
            if self.fusion == "mean"
            else "the trained head did NOT improve on the memory bank alone: fusion 'memory' kept"
        )
        return f"{verdict} (held-out synthetic defects, pixel AUROC: {figures})"


@torch.no_grad()
def check_head(
    detector: BatteryDetector,
    images: Sequence[np.ndarray],
    bit_depth: int | None = None,
    on_part: bool = True,
) -> HeadCheck:
    """Measure ``text_scale`` on ``images`` and choose the fusion; sets both on ``detector``."""
    detector.text_scale = text_scale(detector, images, bit_depth)
    data = SyntheticDefectSet(
        images, detector.image_size, HELD_OUT_SAMPLES, HELD_OUT_SEED, bit_depth=bit_depth,
        on_part=on_part,
    )
    fusions = ("memory", "mean", "text") if detector.memory_bank is not None else ("text",)
    maps: dict[str, list[np.ndarray]] = {f: [] for f in fusions}
    labels = []
    chosen = detector.fusion
    detector.fusion = "mean"  # one forward pass computes both maps
    try:
        for i in range(len(data)):
            x, y, _ = data[i]
            labels.append(y.numpy())
            parts = detector.maps(x[None].to(detector.text_embeddings.device))
            for f in fusions:
                detector.fusion = f
                fused = detector.fuse(parts.text, parts.memory)
                maps[f].append(detector.smooth(fused).clamp(0.0, 1.0)[0].cpu().numpy())
            detector.fusion = "mean"
    finally:
        detector.fusion = chosen
    aurocs = {f: pixel_auroc(labels, m) or 0.5 for f, m in maps.items()}
    best = "text"
    if detector.memory_bank is not None:
        best = "mean" if aurocs["mean"] > aurocs["memory"] else "memory"
    detector.fusion = best
    return HeadCheck(detector.text_scale, aurocs, best)
