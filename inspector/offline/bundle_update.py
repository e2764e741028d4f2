"""``inspector bundle update --add-normals``: learn from confirmed false rejects, then recalibrate.

The normal images (a feedback export's ``train/good``: the false rejects technicians
confirmed) join the memory bank (``models.bundle.add_normals``); the thresholds are then
calibrated again for the bundle's target false-reject rate. The false-reject and escape rates
are measured before and after on the same images, each verdict by the thresholds in force at
the time, so the user sees what the update bought and what it cost:

- false rejects on the added images (before: why they were sent; after: they are in the bank,
  so this says only that the update took),
- false rejects on the other normal images (the export's kept passed frames, ``test/good``,
  and any ``--calibration`` images),
- escapes on the labelled defects (confirmed rejects, ``test/<defect>``).

The update scores with torch: the bank's tensors change, so an ONNX export or TensorRT engine
of the bundle is stale afterwards and must be made again (the bundle's backend is kept).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inspector.offline.calibration import (
    DEFAULT_MARGIN,
    RateEstimate,
    calibrate,
    wilson,
)
from inspector.offline.evaluation import run_predictor
from inspector.runtime.predictor import Predictor
from inspector.vision.tiling import cut_as_inspected
from models.bundle_files import CALIBRATION_FILE
from models.data.datasets import GOOD, Sample, defect_samples, is_mvtec, train_images
from models.image_io import ImageError, list_images, read_image
from models.recipe import Thresholds, load_recipe, model_id, record_step, save_recipe

DEFAULT_RATE = 0.01


@dataclass
class Rates:
    """False rejects on the added and on the other normal images, escapes on the defects."""

    added: RateEstimate
    others: RateEstimate | None
    escapes: RateEstimate | None


@dataclass
class UpdateReport:
    """What ``update_with_normals`` did and measured."""

    bundle: Path
    added: int
    patches: tuple[int, int]  # bank patches before, after
    model_ids: tuple[str, str]
    thresholds: tuple[Thresholds, Thresholds]
    before: Rates
    after: Rates
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        def rate(r: RateEstimate | None) -> str:
            return "-" if r is None else f"{r.k}/{r.n} = {r.rate:.1%}"

        (t0, t1), (b, a) = self.thresholds, (self.before, self.after)
        out = [
            f"added {self.added} normal image(s) to the memory bank of {self.bundle}: "
            f"{self.patches[0]} -> {self.patches[1]} patches",
            f"image threshold {t0.image:.4f} -> {t1.image:.4f}, pixel threshold "
            f"{t0.pixel:.4f} -> {t1.pixel:.4f}",
            f"model {self.model_ids[0]} -> {self.model_ids[1]}",
            f"{'':32}{'before':>16}{'after':>16}",
            f"{'false rejects, added images':32}{rate(b.added):>16}{rate(a.added):>16}",
            f"{'false rejects, other normals':32}{rate(b.others):>16}{rate(a.others):>16}",
            f"{'escapes, labelled defects':32}{rate(b.escapes):>16}{rate(a.escapes):>16}",
        ]
        return out + [f"note: {n}" for n in self.notes]


def _failed_share(predictor, samples: Sequence[Sample], want: str) -> RateEstimate | None:
    """Share of ``samples`` whose verdict is ``want`` (None without samples)."""
    if not samples:
        return None
    results, _ = run_predictor(predictor, list(samples), progress=False)
    return wilson(sum(r.verdict == want for r in results), len(results))


def measure(predictor, added: list[Path], others: list[Path], defects: list[Sample]) -> Rates:
    """The three rates with ``predictor``'s current thresholds."""
    return Rates(
        added=_failed_share(predictor, [Sample(p, 0, GOOD) for p in added], "fail"),
        others=_failed_share(predictor, [Sample(p, 0, GOOD) for p in others], "fail"),
        escapes=_failed_share(predictor, defects, "pass"),
    )


def _normals_and_defects(data: Path) -> tuple[list[Path], list[Sample]]:
    """Normal images (``test/good``, or a plain folder) and labelled defects of ``data``."""
    if not is_mvtec(data):
        return list_images(data), []
    good = data / "test" / GOOD
    return (list_images(good) if good.is_dir() else []), defect_samples(data)


def update_with_normals(
    bundle: str | Path,
    normals: str | Path,
    calibration: str | Path | None = None,
    target_rate: float | None = None,
    margin: float | None = None,
    progress: bool = False,
) -> UpdateReport:
    """Add ``normals`` (a feedback export: its ``train/good``; or a folder of images) to the
    bank of ``bundle``, recalibrate, and measure before and after.

    Args:
        bundle: the bundle, changed in place.
        normals: a feedback export (MVTec layout) or a plain folder of normal images.
        calibration: more normal images (and labelled defects) to calibrate and measure on;
            the export's ``test/good`` and ``test/<defect>`` are always used.
        target_rate: the false-reject rate to calibrate for; default the bundle's last
            calibration's (``calibration.json``), else 1 %.
        margin: the calibration margin; default the last calibration's.

    Raises:
        ValueError / ImageError: no images to add, or no normal images to calibrate on.
    """
    from models.bundle import add_normals  # torch

    bundle, normals = Path(bundle), Path(normals)
    added = train_images(normals)  # MVTec train/good, or the folder itself
    others, defects = _measured_on(normals, calibration)
    target_rate, margin = _calibration_target(bundle, target_rate, margin)
    calibrate_on = others + added
    if not calibrate_on:
        raise ImageError("no normal images to calibrate on")
    recipe = load_recipe(bundle)
    images = cut_as_inspected([read_image(p) for p in added], recipe)  # the bank holds tiles
    before, id_before, t_before = _measure_as_is(bundle, added, others, defects)
    updated = add_normals(bundle, images, progress=progress)
    predictor = Predictor(bundle, "torch")
    try:
        result = calibrate(
            predictor, calibrate_on, defects, target_rate, holdout=False, progress=progress,
            margin=margin,
        )
        after = measure(predictor, added, others, defects)
    finally:
        predictor.close()
    _keep_backend(bundle, recipe.backend)  # the recipe's thresholds were set on torch
    record_step(
        bundle,
        "bundle update",
        {"target_rate": target_rate, "margin": margin, "scored_with": "torch"},
        {"added_normals": added, "calibration": calibrate_on, "defects": [s.path for s in defects]},
    )
    return UpdateReport(
        bundle=bundle,
        added=len(added),
        patches=(recipe.coreset.kept, updated.coreset.kept),
        model_ids=(id_before, model_id(bundle)),
        thresholds=(t_before, result.thresholds),
        before=before,
        after=after,
        notes=list(result.notes) + _stale_export_notes(bundle, recipe.backend),
    )


def _measured_on(normals: Path, calibration: Path | None) -> tuple[list[Path], list[Sample]]:
    """The other normal images and the labelled defects to measure (and calibrate) on: the
    export's ``test/good`` and ``test/<defect>``, and those of ``calibration``."""
    others, defects = _normals_and_defects(normals) if is_mvtec(normals) else ([], [])
    if calibration is not None:
        more, more_defects = _normals_and_defects(Path(calibration))
        others, defects = others + more, defects + more_defects
    return others, defects


def _calibration_target(
    bundle: Path, target_rate: float | None, margin: float | None
) -> tuple[float, float]:
    """The rate and margin to calibrate for: as given, else the last calibration's, else the
    defaults."""
    last = {}
    if (bundle / CALIBRATION_FILE).is_file():
        last = json.loads((bundle / CALIBRATION_FILE).read_text(encoding="utf-8"))
    target_rate = target_rate or last.get("target_rate") or DEFAULT_RATE
    margin = last.get("margin", DEFAULT_MARGIN) if margin is None else margin
    return target_rate, margin


def _measure_as_is(
    bundle: Path, added: list[Path], others: list[Path], defects: list[Sample]
) -> tuple[Rates, str, Thresholds]:
    """The rates with the bundle as it is, and its model id and thresholds."""
    predictor = Predictor(bundle, "torch")
    try:
        rates = measure(predictor, added, others, defects)
        return rates, predictor.model_id, predictor.recipe.thresholds
    finally:
        predictor.close()


def _keep_backend(bundle: Path, backend: str) -> None:
    """Put the station's backend back into the recipe (calibration recorded torch's)."""
    final = load_recipe(bundle)
    if final.backend != backend:
        final.backend = backend
        save_recipe(bundle, final)


def _stale_export_notes(bundle: Path, backend: str) -> list[str]:
    """Say that an export of the old bank is stale (the station's backend is not torch)."""
    if backend == "torch":
        return []
    return [
        f"the bank changed: export the bundle again for {backend} "
        f"('inspector export onnx --bundle {bundle}')"
    ]
