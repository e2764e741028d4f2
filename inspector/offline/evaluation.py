"""Running a bundle over an MVTec-layout test set and scoring it.

Image metrics need only the folder names (``test/good`` vs ``test/<defect>``); pixel metrics
(pixel AUROC, AUPRO) need a mask for every defective image and are null otherwise. Pixel
metrics are computed at the frame's aspect ratio with the long side capped at ``EVAL_SIDE``
(map resized bilinearly, mask by nearest neighbour), which keeps them fast on large frames.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspector.runtime.predictor import Predictor
from inspector.vision.decision import Decision
from models.data import metrics
from models.data.datasets import Sample, has_masks, load_test_split
from models.image_io import ImageError

EVAL_SIDE = 256


@dataclass
class ImageResult:
    """One test image's outcome. ``map`` covers the frame (see ``Inspection.map``)."""

    sample: Sample
    decision: Decision
    map: np.ndarray
    frame_shape: tuple[int, ...]
    patch_area_px: float | None = None  # one model patch, in frame px (``Inspection``)

    @property
    def score(self) -> float:
        return float(self.decision.image_score)

    @property
    def verdict(self) -> str:
        return self.decision.verdict


@dataclass
class Evaluation:
    """All results of one evaluation run and the metrics computed from them."""

    bundle: Path
    data: Path
    model_id: str
    backend: str
    results: list[ImageResult]
    skipped: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.sample.label for r in self.results], np.int64)

    @property
    def scores(self) -> np.ndarray:
        return np.array([r.score for r in self.results], np.float64)

    @cached_property
    def pixels(self) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
        """(masks, maps) at evaluation resolution when every defective image has a mask, else
        None. Read once (every mask file) for both the metrics and the report's pixel ROC."""
        if not has_masks([r.sample for r in self.results]):
            return None
        return pixel_pairs(self.results)


def eval_shape(frame_shape: Sequence[int], side: int = EVAL_SIDE) -> tuple[int, int]:
    """(h, w) with the frame's aspect ratio and the long side at most ``side``."""
    h, w = int(frame_shape[0]), int(frame_shape[1])
    f = min(1.0, side / max(h, w))
    return max(1, round(h * f)), max(1, round(w * f))


def pixel_pairs(results: Sequence[ImageResult]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(masks, maps) at evaluation resolution, for the images that have a mask."""
    masks, maps = [], []
    for r in results:
        h, w = eval_shape(r.frame_shape)
        mask = r.sample.read_mask((h, w))
        if mask is None:
            continue
        masks.append(mask)
        maps.append(cv2.resize(r.map.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR))
    return masks, maps


def _rate(values: list[bool]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def compute_metrics(evaluation: Evaluation) -> dict:
    """The JSON-ready metrics: image AUROC / F1-max always (when both classes exist), pixel
    AUROC and AUPRO only when every defective image has a mask, and how the bundle's own
    thresholds fare (false-reject rate on normal images, escape rate on defective ones)."""
    results = evaluation.results
    labels, scores = evaluation.labels, evaluation.scores
    with_masks = evaluation.pixels is not None
    pixel_auroc = aupro = None
    if evaluation.pixels is not None:
        masks, maps = evaluation.pixels
        pixel_auroc = metrics.pixel_auroc(masks, maps)
        aupro = metrics.aupro(masks, maps)
    normal = [r for r in results if r.sample.label == 0]
    per_defect: dict[str, dict] = {}
    for defect in sorted({r.sample.defect for r in results if r.sample.label == 1}):
        group = [r for r in results if r.sample.defect == defect]
        sub = normal + group
        per_defect[defect] = {
            "n_images": len(group),
            "image_auroc": _round(
                metrics.image_auroc([r.sample.label for r in sub], [r.score for r in sub])
            ),
            "escape_rate": _rate([r.verdict == "pass" for r in group]),
        }
    thresholds = results[0].decision.thresholds if results else None
    return {
        "image_auroc": _round(metrics.image_auroc(labels, scores)),
        "pixel_auroc": _round(pixel_auroc),
        "aupro": _round(aupro),
        "image_f1_max": _round(metrics.image_f1_max(labels, scores)),
        "n_images": len(results),
        "n_normal": len(normal),
        "n_defective": len(results) - len(normal),
        "has_masks": with_masks,
        "per_defect": per_defect,
        "at_recipe_thresholds": {
            "thresholds": thresholds.model_dump() if thresholds else None,
            "false_reject_rate": _rate([r.verdict == "fail" for r in normal]),
            "escape_rate": _rate([r.verdict == "pass" for r in results if r.sample.label == 1]),
        },
        "model_id": evaluation.model_id,
        "backend": evaluation.backend,
        "skipped": evaluation.skipped,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def run_predictor(
    predictor: Predictor,
    samples: Sequence[Sample],
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "evaluate",
) -> tuple[list[ImageResult], list[str]]:
    """Inspect every sample; unreadable images are listed as skipped, not fatal."""
    results: list[ImageResult] = []
    skipped: list[str] = []
    for i in tqdm(
        range(0, len(samples), batch_size), desc=desc, unit="batch", disable=not progress
    ):
        chunk, frames = [], []
        for s in samples[i : i + batch_size]:
            try:
                frames.append(s.read())
                chunk.append(s)
            except ImageError as exc:
                skipped.append(str(exc))
        for s, frame, out in zip(chunk, frames, predictor.inspect_batch(frames), strict=True):
            if isinstance(out, ImageError):
                skipped.append(f"{s.path}: {out}")
                continue
            results.append(
                ImageResult(s, out.decision, out.map, tuple(frame.shape), out.patch_area_px)
            )
    return results, skipped


def evaluate(
    bundle: str | Path,
    data: str | Path,
    backend: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> Evaluation:
    """Run ``bundle`` over ``data/test`` and compute the metrics.

    Example:
        >>> ev = evaluate("bundles/pouch", "datasets/pouch")            # doctest: +SKIP
        >>> ev.metrics["image_auroc"]                                   # doctest: +SKIP
        0.97
    """
    samples = load_test_split(data)
    predictor = Predictor(bundle, backend)
    try:
        results, skipped = run_predictor(predictor, samples, batch_size, progress)
    finally:
        predictor.close()
    if not results:
        raise ImageError(f"none of the {len(samples)} test images of {data} could be inspected")
    ev = Evaluation(
        Path(bundle), Path(data), predictor.model_id, predictor.backend.name, results, skipped
    )
    ev.metrics = compute_metrics(ev)
    return ev


def write_json(evaluation: Evaluation, path: str | Path) -> Path:
    """Write the metrics (plus bundle and data paths) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**evaluation.metrics, "bundle": str(evaluation.bundle), "data": str(evaluation.data)}
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return path
