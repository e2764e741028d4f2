"""Setting a bundle's thresholds from normal images for a target false-reject rate.

A frame fails when a connected region of its map reaches the pixel threshold ``P``, covers
at least ``A`` frame pixels and peaks at or above the image threshold ``I`` (see
``inspector.vision.decision``). Calibration chooses them in that order:

1. ``P``: a high quantile (default 99.5 %) of all normal pixels' map values, i.e. "brighter
   than nearly all of a normal cell". It shapes the regions, it does not decide the verdict.
2. ``A``: half the area of one model patch in frame pixels. The map is a smoothed patch grid
   (16x16 for a 224-px ViT-14, ``recipe.patch_grid``) per model input (the whole frame, the
   ROI, or one tile at the inspection pitch), so a region smaller than that is a blip of a
   peak, not something the model resolved.
3. ``I``: with ``P`` and ``A`` fixed, each normal image has one number, the peak of its
   largest-peak region (0 when it has none), and it fails exactly when that number reaches
   ``I``. ``I`` is the ``k``-th highest of them, ``k = floor(rate x n)``, plus a stated
   ``margin`` (``DEFAULT_MARGIN`` score units unless told otherwise), rounded up to the 4
   decimals results show: so at most the target share of the calibration images fails, and a
   normal cell that scores at the limit on one backend does not fail on another (backends
   agree to about 1e-4; TensorRT's FP16 to about 1e-3).

The image scores of all the normal images are stored too, over ten fixed bins (their deciles,
``recipe.score_reference``): the line's drift check (``inspector.station.drift``) compares its
recent scores with them.

Thresholds are stored to 4 decimals, as results and the page show them. The backend that
produced the maps is recorded with them (``recipe.backend`` and ``calibration.json``), so
``inspector evaluate`` and the station use it unless told otherwise.

With enough images a random 30 % is held out first and the false-reject rate measured on
it, with a 95 % interval, so the user sees the rate on cells the thresholds were not fitted
to. Labelled defects, when given, get the escape rate at the chosen point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from inspector.offline.evaluation import ImageResult, run_predictor
from inspector.runtime.predictor import Predictor
from inspector.vision.decision import find_regions
from models.bundle_files import CALIBRATION_FILE
from models.data.datasets import Sample
from models.recipe import (
    CALIBRATION_MARGIN,
    THRESHOLD_DECIMALS,
    ScoreReference,
    Thresholds,
    model_id,
    save_recipe,
)

PIXEL_QUANTILE = 0.995
DEFAULT_MARGIN = CALIBRATION_MARGIN
DECIMALS = THRESHOLD_DECIMALS
MIN_HOLDOUT = 10  # held-out images needed for a held-out check (and as many again to fit)
HOLDOUT_FRACTION = 0.3
SCORE_BINS = 10  # of the drift reference: the deciles of the normal images' scores


@dataclass
class RateEstimate:
    """``k`` of ``n`` images, the rate and its 95 % Wilson interval."""

    k: int
    n: int
    rate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.k}/{self.n} = {self.rate:.1%} (95% interval {self.low:.1%}-{self.high:.1%})"


def wilson(k: int, n: int, z: float = 1.96) -> RateEstimate:
    """The Wilson score interval of a binomial rate (sound for small n and k = 0)."""
    if n == 0:
        return RateEstimate(0, 0, float("nan"), 0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return RateEstimate(k, n, p, max(0.0, c - h), min(1.0, c + h))


@dataclass
class CalibrationResult:
    """What calibration chose, from what, and how it holds up."""

    thresholds: Thresholds
    target_rate: float
    n_fit: int
    fit_rate: RateEstimate
    holdout_rate: RateEstimate | None
    all_rate: RateEstimate
    backend: str
    model_id: str
    margin: float
    highest_passing_peak: float | None
    escape_rate: RateEstimate | None
    escape_by_defect: dict[str, RateEstimate] = field(default_factory=dict)
    normal_score_quantiles: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["thresholds"] = self.thresholds.model_dump()
        return d

    def summary(self) -> list[str]:
        """The lines ``inspector calibrate`` prints: what was chosen and why."""
        t = self.thresholds
        q = self.normal_score_quantiles
        if self.highest_passing_peak is None:
            why = "no region on enough normal images: any region fails"
        else:
            why = (
                f"highest passing normal region peak {self.highest_passing_peak:.4f} + margin "
                f"{self.margin:.4f}, rounded up"
            )
        lines = [
            f"target false-reject rate {self.target_rate:.2%}, fitted on {self.n_fit} normal "
            f"image(s), backend {self.backend}, model {self.model_id}",
            f"  pixel threshold  {t.pixel:.4f}   ({PIXEL_QUANTILE:.1%} of normal pixels lie below)",
            f"  min defect area  {t.min_defect_area_px:.0f} px   (half a model patch, in frame "
            "pixels)",
            f"  image threshold  {t.image:.4f}   ({why}; normal region peaks: median "
            f"{q.get('median', 0):.4f}, max {q.get('max', 0):.4f})",
            f"  false rejects on the fitted images: {self.fit_rate}",
        ]
        if self.holdout_rate is not None:
            lines.append(f"  false rejects on held-out normal images: {self.holdout_rate}")
        lines.append(
            f"  false rejects on all {self.all_rate.n} calibration images: {self.all_rate} "
            f"(what 'inspector evaluate' reports on them with the {self.backend} backend)"
        )
        if self.escape_rate is not None:
            lines.append(f"  escapes (defective images passed): {self.escape_rate}")
            for defect, est in self.escape_by_defect.items():
                lines.append(f"    {defect}: {est}")
        lines += [f"note: {n}" for n in self.notes]
        return lines


def reference_from_scores(scores: Sequence[float], bins: int = SCORE_BINS) -> ScoreReference:
    """Fixed bins at the quantiles of ``scores`` (ties merge bins) and the scores' counts: what
    the line's drift check (``inspector.station.drift``) compares its recent scores with."""
    values = np.asarray(scores, np.float64)
    if values.size == 0:
        raise ValueError("a score reference needs at least one score")
    inner = np.quantile(values, np.arange(1, bins) / bins)
    edges = sorted({round(float(e), 6) for e in inner})
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return ScoreReference(edges=edges, counts=[int(c) for c in counts], n=int(values.size))


def region_peaks(results: Sequence[ImageResult], pixel: float, min_area_px: float) -> np.ndarray:
    """Per image, the highest peak of a region at ``pixel`` with area >= ``min_area_px``
    (0 when none): the image fails exactly when this reaches the image threshold."""
    out = np.zeros(len(results), np.float64)
    for i, r in enumerate(results):
        regions = find_regions(r.map, r.frame_shape, pixel, min_area_px)
        out[i] = max((reg.peak for reg in regions), default=0.0)
    return out


def patch_area_px(results: Sequence[ImageResult], grid: int) -> float:
    """Area of one model patch in frame pixels (median over the images): what the predictor
    reports (tiles at the inspection pitch, or a ROI), else that of a ``grid`` x ``grid``
    patch grid (``recipe.patch_grid``) over the whole frame."""
    areas = [
        r.patch_area_px
        if r.patch_area_px is not None
        else r.frame_shape[0] * r.frame_shape[1] / grid**2
        for r in results
    ]
    return float(np.median(areas))


def limit_above(peak: float, margin: float, decimals: int = DECIMALS) -> float:
    """The smallest ``decimals``-place number at least ``margin`` above ``peak`` and strictly
    above it (so ``peak`` itself passes even with no margin)."""
    step = 10.0**-decimals
    limit = math.ceil(round((peak + margin) / step, 6)) * step
    if limit <= peak:
        limit += step
    return round(limit, decimals)


def choose_thresholds(
    normal: Sequence[ImageResult],
    target_rate: float,
    grid: int,
    pixel_quantile: float = PIXEL_QUANTILE,
    margin: float = DEFAULT_MARGIN,
) -> tuple[Thresholds, np.ndarray, float | None]:
    """Thresholds for ``target_rate`` from normal results of a model with a ``grid`` x ``grid``
    patch grid; also their region peaks and the highest peak left to pass (None when fewer
    than ``k + 1`` images have a region, so any region may fail)."""
    pixels = np.concatenate([r.map.ravel() for r in normal])
    pixel = round(float(np.quantile(pixels, pixel_quantile)), DECIMALS)
    min_area = round(0.5 * patch_area_px(normal, grid), 1)
    peaks = region_peaks(normal, pixel, min_area)
    k = int(math.floor(target_rate * len(peaks) + 1e-9))
    ranked = np.sort(peaks)[::-1]
    passing: float | None = None
    if k >= len(ranked) or ranked[k] <= 0.0:
        image = pixel  # at most k images have a region at all
    else:
        passing = float(ranked[k])
        image = limit_above(passing, margin)
    image = float(min(1.0, max(image, pixel)))
    thresholds = Thresholds(pixel=pixel, image=image, min_defect_area_px=min_area, calibrated=True)
    return thresholds, peaks, passing


def calibrate(
    predictor: Predictor,
    normal_paths: Sequence[Path],
    defects: Sequence[Sample] = (),
    target_rate: float = 0.01,
    holdout: bool = True,
    seed: int = 0,
    progress: bool = True,
    write: bool = True,
    margin: float = DEFAULT_MARGIN,
) -> CalibrationResult:
    """Choose and (with ``write``) store the thresholds of ``predictor``'s bundle.

    Args:
        predictor: the bundle to calibrate, with the backend it will run on.
        normal_paths: normal images, never seen as references or in training if possible.
        defects: labelled defective samples for the escape rate (optional).
        target_rate: wanted false-reject rate on normal cells, in (0, 1).
        holdout: hold out 30 % of the normal images to check the rate (needs 20+ images).
        seed: seed of the held-out split.
        progress: show progress bars.
        write: save the thresholds and the backend into the bundle's recipe and the details
            into ``calibration.json`` beside it.
        margin: score units between the highest normal peak left to pass and the image
            threshold.

    Raises:
        ValueError: no normal images, a rate outside (0, 1) or a margin outside [0, 0.5].
    """
    _check_request(target_rate, margin, normal_paths)
    samples = [Sample(Path(p), 0, "good") for p in normal_paths]
    normal, skipped = run_predictor(predictor, samples, progress=progress, desc="normal images")
    if not normal:
        raise ValueError("none of the normal images could be inspected")
    notes = [f"skipped {s}" for s in skipped]
    fit, held, split_notes = _split_holdout(normal, holdout, seed)
    thresholds, peaks, passing = choose_thresholds(
        fit, target_rate, predictor.recipe.patch_grid, margin=margin
    )
    fit_fails = int((peaks >= thresholds.image).sum())
    held_fails = int(_fails(held, thresholds).sum())
    escape, by_defect, defect_notes = _escapes(predictor, defects, thresholds, progress)
    notes += split_notes + _resolution_notes(target_rate, len(fit)) + defect_notes
    if thresholds.image >= 1.0:
        notes.append("the image threshold is at its maximum: normal maps saturate; retrain")
    result = CalibrationResult(
        thresholds=thresholds,
        target_rate=target_rate,
        n_fit=len(fit),
        fit_rate=wilson(fit_fails, len(fit)),
        holdout_rate=wilson(held_fails, len(held)) if held else None,
        all_rate=wilson(fit_fails + held_fails, len(normal)),
        backend=predictor.backend.name,
        model_id=predictor.model_id,
        margin=margin,
        highest_passing_peak=passing,
        escape_rate=escape,
        escape_by_defect=by_defect,
        normal_score_quantiles={
            "median": float(np.median(peaks)),
            "p90": float(np.quantile(peaks, 0.9)),
            "max": float(peaks.max()),
        },
        notes=notes,
    )
    if write:
        _save(predictor, result, normal)
    return result


def _check_request(target_rate: float, margin: float, normal_paths: Sequence[Path]) -> None:
    """``ValueError`` for a rate outside (0, 1), a margin outside [0, 0.5] or no images."""
    if not 0.0 < target_rate < 1.0:
        raise ValueError(f"the false-reject rate must be between 0 and 1, got {target_rate}")
    if not 0.0 <= margin <= 0.5:
        raise ValueError(f"the margin must be between 0 and 0.5 score units, got {margin}")
    if not normal_paths:
        raise ValueError("calibration needs normal images")


def _split_holdout(
    normal: list[ImageResult], holdout: bool, seed: int
) -> tuple[list[ImageResult], list[ImageResult], list[str]]:
    """The results to fit on and those held out (a random 30 %, with enough images), and a
    note when a held-out check was asked for but there are too few images."""
    if holdout and len(normal) >= 2 * MIN_HOLDOUT:
        order = np.random.default_rng(seed).permutation(len(normal))
        n_held = max(MIN_HOLDOUT, round(HOLDOUT_FRACTION * len(normal)))
        held = [normal[i] for i in order[:n_held]]
        return [normal[i] for i in order[n_held:]], held, []
    if holdout:
        return normal, [], [
            f"no held-out check: it needs {2 * MIN_HOLDOUT} normal images, got {len(normal)}"
        ]
    return normal, [], []


def _fails(results: Sequence[ImageResult], thresholds: Thresholds) -> np.ndarray:
    """Per result, whether it fails at ``thresholds``."""
    peaks = region_peaks(results, thresholds.pixel, thresholds.min_defect_area_px)
    return peaks >= thresholds.image


def _resolution_notes(target_rate: float, n_fit: int) -> list[str]:
    """A note when ``n_fit`` images are too few to resolve ``target_rate``."""
    if target_rate * n_fit >= 1.0:
        return []
    return [
        f"{n_fit} fitted images cannot resolve a {target_rate:.2%} rate: the image "
        f"threshold sits above every one of them, and about 1/(n+1) = "
        f"{1 / (n_fit + 1):.1%} of new normal cells may still exceed it; use at least "
        f"{math.ceil(1 / target_rate)} normal images"
    ]


def _escapes(
    predictor: Predictor, defects: Sequence[Sample], thresholds: Thresholds, progress: bool
) -> tuple[RateEstimate | None, dict[str, RateEstimate], list[str]]:
    """The escape rate on the labelled defects at ``thresholds``, overall and per defect, and
    notes on the images that could not be inspected."""
    if not defects:
        return None, {}, []
    bad, skipped = run_predictor(predictor, list(defects), progress=progress, desc="defects")
    notes = [f"skipped {s}" for s in skipped]
    if not bad:
        return None, {}, notes
    escaped = ~_fails(bad, thresholds)
    by_defect = {}
    for defect in sorted({r.sample.defect for r in bad}):
        sel = np.array([r.sample.defect == defect for r in bad])
        by_defect[defect] = wilson(int(escaped[sel].sum()), int(sel.sum()))
    return wilson(int(escaped.sum()), len(bad)), by_defect, notes


def _save(predictor: Predictor, result: CalibrationResult, normal: list[ImageResult]) -> None:
    """Store the thresholds, the backend and the drift reference in the bundle's recipe and
    the details in ``calibration.json``; the result and predictor get the new model id."""
    recipe = predictor.recipe.model_copy(
        update={
            "thresholds": result.thresholds,
            "backend": predictor.backend.name,
            "score_reference": reference_from_scores([r.score for r in normal]),
        }
    )
    save_recipe(predictor.bundle, recipe)
    predictor.recipe = recipe
    # the id covers the thresholds: say the one the calibrated bundle has
    predictor.model_id = result.model_id = model_id(predictor.bundle, recipe)
    path = predictor.bundle / CALIBRATION_FILE
    path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
