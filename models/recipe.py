"""A bundle's ``recipe.yaml``: what model it is and how its map becomes a verdict.

No torch here: the ONNX Runtime and TensorRT paths read recipes too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.bundle_files import DECODER_FILE, MEMORY_FILE, RECIPE_FILE, TEXT_FILE

SCHEMA_VERSION = 2  # 2: backbone families, PatchCore bank, normalisation in the graph
THRESHOLD_DECIMALS = 4  # thresholds are stored and published to this many decimals, as scores
CALIBRATION_MARGIN = 0.005  # default score units between the highest passing normal peak and
# the calibrated image threshold (backends agree to ~1e-4, TensorRT FP16 to ~1e-3)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Prompts(_Strict):
    """The prompt ensemble (``{}`` stands for the product noun)."""

    normal_states: list[str]
    abnormal_states: list[str]
    templates: list[str]


class Coreset(_Strict):
    """How many reference patches the memory bank keeps (``models.memory_bank.CoresetSize``)."""

    fraction: float = Field(0.1, gt=0.0, le=1.0)
    minimum: int = Field(2048, ge=1)
    maximum: int = Field(16384, ge=1)
    kept: int = Field(0, ge=0)  # patches in the bank as built
    of_total: int = Field(0, ge=0)  # patches the references had


class Thresholds(_Strict):
    """How an anomaly map becomes a verdict.

    A defect region is a connected area of the map at or above ``pixel`` whose area in frame
    pixels is at least ``min_defect_area_px`` and whose peak is at least ``image``. A frame
    with one or more defect regions fails.
    """

    pixel: float = Field(0.5, ge=0.0, le=1.0)
    image: float = Field(0.5, ge=0.0, le=1.0)
    min_defect_area_px: float = Field(0.0, ge=0.0)
    calibrated: bool = False


# --- lineage: what built, trained and calibrated a bundle (issue 16, item 7) ---------------


class ImageSet(_Strict):
    """A set of images by content: the SHA-256 of each file's bytes, and one digest of all."""

    count: int = Field(ge=0)
    sha256: str  # of the sorted per-file hashes, one per line: same files, same digest
    files: dict[str, str] = Field(default_factory=dict)  # file name -> its SHA-256


class Step(_Strict):
    """One command that changed the bundle: what ran, with which parameters, on which images."""

    command: str  # "bundle create", "train", "calibrate", "bundle update"
    params: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    images: dict[str, ImageSet] = Field(default_factory=dict)  # role -> images
    software: str  # battery-inspector version
    ts: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class ScoreReference(_Strict):
    """The image scores of the calibration's normal images over fixed bins: what the drift
    check compares the line's recent scores with (``inspector.station.drift``)."""

    edges: list[float]  # inner bin edges, ascending; the outer bins are open
    counts: list[int]  # images per bin, len(edges) + 1
    n: int = Field(ge=0)


class Roi(_Strict):
    """Which part of a frame is inspected; pixels outside it are never scored.

    ``auto`` finds the cell (the largest foreground contour, its rotated rectangle plus
    ``margin``), ``rect`` is a fixed ``[x, y, w, h]`` and ``polygon`` a fixed ``[[x, y], ...]``
    mask, both in frame pixels.
    """

    mode: Literal["auto", "rect", "polygon"] = "auto"
    rect: list[int] | None = Field(None, min_length=4, max_length=4)
    polygon: list[list[float]] | None = Field(None, min_length=3)
    margin: float = Field(0.02, ge=0.0, le=0.5)  # auto: share of the cell's size added around it
    min_area: float = Field(0.02, gt=0.0, lt=1.0)  # auto: smallest cell, as a share of the frame

    @model_validator(mode="after")
    def _fits_mode(self) -> Roi:
        if self.mode == "rect" and (self.rect is None or min(self.rect[2:]) <= 0):
            raise ValueError("roi mode 'rect' needs rect: [x, y, w, h] with w, h > 0")
        if self.mode == "polygon" and (
            self.polygon is None or any(len(p) != 2 for p in self.polygon)
        ):
            raise ValueError("roi mode 'polygon' needs polygon: [[x, y], ...] (3+ points)")
        return self


class Recipe(_Strict):
    """Everything about a bundle that is not a tensor."""

    schema_version: int = SCHEMA_VERSION
    arch: str
    product: str = Field(min_length=1)
    input_size: int = Field(224, gt=0)
    patch_grid: int = Field(16, gt=0)  # side of the encoder's patch grid (input_size // patch)
    taps: list[int]
    prompts: Prompts
    fusion: Literal["mean", "text", "memory"] = "mean"
    memory_weight: float = Field(0.5, ge=0.0, le=1.0)
    text_scale: float | None = Field(None, gt=0.0)  # decoder map's normal scale (training)
    coreset: Coreset = Coreset()
    # share of each image's median patch distance taken off its memory-bank distances
    # (models/memory_bank.py; 0 in bundles made before it existed)
    median_weight: float = Field(0.0, ge=0.0, le=1.0)
    smoothing_sigma: float = Field(4.0, ge=0.0)
    thresholds: Thresholds = Thresholds()
    pixel_pitch_mm: float | None = Field(None, gt=0.0)
    # region of interest and tiling (inspector/vision/roi.py, inspector/vision/tiling.py);
    # None: whole frame
    roi: Roi | None = None
    inspect_mm_per_px: float | None = Field(None, gt=0.0)  # tile at this pitch (needs the above)
    tile_overlap: float = Field(0.25, ge=0.0, lt=0.9)  # share of a tile its neighbours overlap
    bit_depth: int | None = Field(None, ge=1, le=16)
    # the runtime that scores this bundle by default; calibration records the one it used.
    # A name of inspector's backend registry, checked where the bundle is run.
    backend: str = "torch"
    n_reference_images: int = Field(0, ge=0)
    encoder_sha256: str
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    # lineage and the drift reference (issue 16); both count towards model_id
    lineage: list[Step] = Field(default_factory=list)
    score_reference: ScoreReference | None = None

    @model_validator(mode="after")
    def _pitch_known(self) -> Recipe:
        if self.inspect_mm_per_px is not None and self.pixel_pitch_mm is None:
            raise ValueError("inspect_mm_per_px needs pixel_pitch_mm (the frame's own pitch)")
        return self

    @property
    def tiled(self) -> bool:
        """Whether frames are cut into tiles at ``inspect_mm_per_px``."""
        return self.inspect_mm_per_px is not None


def load_recipe(bundle: str | Path) -> Recipe:
    """Read and validate ``BUNDLE/recipe.yaml``."""
    path = Path(bundle) / RECIPE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{bundle} is not a model bundle: {path} is missing")
    with path.open(encoding="utf-8") as f:
        return Recipe.model_validate(yaml.safe_load(f))


def save_recipe(bundle: str | Path, recipe: Recipe) -> Path:
    """Write ``recipe.yaml`` atomically (a power cut leaves the old or the new file)."""
    path = Path(bundle) / RECIPE_FILE
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(recipe.model_dump(), sort_keys=False, allow_unicode=True))
    tmp.replace(path)
    return path


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tensors_id(bundle: str | Path, recipe: Recipe | None = None) -> str:
    """A short id of the model's tensors and map settings (what an ONNX export or a TensorRT
    engine is built from): ``tiny-1a2b3c4d5e6f``. Thresholds and lineage leave it alone, so
    calibrating after an export keeps the export current."""
    bundle = Path(bundle)
    recipe = recipe or load_recipe(bundle)
    h = hashlib.sha256(recipe.encoder_sha256.encode())
    for name in (DECODER_FILE, TEXT_FILE, MEMORY_FILE):
        if (bundle / name).is_file():
            h.update(name.encode())
            h.update(file_sha256(bundle / name).encode())
    h.update(
        f"{recipe.fusion}:{recipe.memory_weight}:{recipe.smoothing_sigma}:{recipe.text_scale}"
        .encode()
    )
    if recipe.median_weight:
        h.update(f"median_weight:{recipe.median_weight}".encode())
    if recipe.roi is not None or recipe.tiled:  # what is inspected changes the maps too
        roi = recipe.roi.model_dump_json() if recipe.roi else "frame"
        h.update(f"{roi}:{recipe.inspect_mm_per_px}:{recipe.tile_overlap}".encode())
    return f"{recipe.arch}-{h.hexdigest()[:12]}"


def model_id(bundle: str | Path, recipe: Recipe | None = None) -> str:
    """The id results carry: the tensors (``tensors_id``), the thresholds and the rest of the
    recipe, lineage included (less its time stamps, so the same commands on the same images
    give the same id). Recalibrating changes it."""
    bundle = Path(bundle)
    recipe = recipe or load_recipe(bundle)
    content = recipe.model_dump(mode="json", exclude={"created"})
    for step in content["lineage"]:
        step.pop("ts", None)
    h = hashlib.sha256(tensors_id(bundle, recipe).encode())
    h.update(json.dumps(content, sort_keys=True, separators=(",", ":")).encode())
    return f"{recipe.arch}-{h.hexdigest()[:12]}"


def image_set(paths: Iterable[str | Path]) -> ImageSet:
    """The ``ImageSet`` of these image files (read in chunks; named by file name)."""
    files = {}
    for p in paths:
        p = Path(p)
        name = p.name if p.name not in files else str(p)
        files[name] = file_sha256(p)
    digest = hashlib.sha256("\n".join(sorted(files.values())).encode()).hexdigest()
    return ImageSet(count=len(files), sha256=digest, files=files)


def software_version() -> str:
    """The installed battery-inspector version (``unknown`` when not installed)."""
    try:
        return version("battery-inspector")
    except PackageNotFoundError:
        return "unknown"


def record_step(
    bundle: str | Path,
    command: str,
    params: dict[str, object] | None = None,
    images: dict[str, Iterable[str | Path]] | None = None,
) -> Recipe:
    """Append one step to the bundle's lineage (and save the recipe); returns the recipe.

    ``params`` values that are not plain numbers, text or booleans are kept as text."""
    recipe = load_recipe(bundle)
    plain = {
        k: v if v is None or isinstance(v, str | int | float | bool) else str(v)
        for k, v in (params or {}).items()
    }
    step = Step(
        command=command,
        params=plain,
        images={role: image_set(paths) for role, paths in (images or {}).items()},
        software=software_version(),
    )
    recipe.lineage = [*recipe.lineage, step]
    save_recipe(bundle, recipe)
    return recipe
