"""The result of one frame, typed once: the daemon builds it, the store keeps it, MQTT publishes
it, the technicians' page and the explainer read it back.

``Result.to_payload()`` is the JSON object of schema ``inspector.result/1`` (docs/mqtt.md,
``JSON_SCHEMA`` below) with its keys in their published order; ``Result.from_payload`` reads a
stored record back, however old or damaged: a missing or unreadable field is None, a region
that cannot be read is left out. Every key of the result is spelled in this module only.

Example:
    >>> r = Result(line="L1", station="S1", cell_id="C-1", frame_id="S1-0001",
    ...            ts="2026-11-25T09:20:14.647Z", verdict="error", error="no image",
    ...            latency=Latency(wait=1.234))
    >>> r.to_payload()["latency_ms"], Result.from_payload(r.to_payload()).error
    ({'wait': 1.23}, 'no image')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

RESULT_SCHEMA = "inspector.result/1"
VERDICTS = ("pass", "fail", "error")
SCORE_DECIMALS = 4  # scores, region areas and map values, as the thresholds beside them


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None (a stored record may hold anything)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass
class Region:
    """One connected defect region, in frame pixels."""

    bbox: tuple[int, int, int, int]  # x, y, width, height
    area_px: float
    peak: float
    mean: float
    centroid: tuple[float, float]  # x, y
    position: str  # 3x3-grid words ("upper left" ... "lower right", "centre"); "" if unknown
    area_mm2: float | None = None

    def to_payload(self) -> dict:
        """The region as results carry it: map values and areas to 4 decimals."""
        return {
            "bbox": list(self.bbox),
            "area_px": _rounded(self.area_px, SCORE_DECIMALS),
            "peak": _rounded(self.peak, SCORE_DECIMALS),
            "mean": _rounded(self.mean, SCORE_DECIMALS),
            "centroid": [round(c, 1) for c in self.centroid],
            "position": self.position,
            "area_mm2": _rounded(self.area_mm2, SCORE_DECIMALS),
        }

    @classmethod
    def from_payload(cls, raw: Any) -> Region | None:
        """A stored region, or None when its box or numbers cannot be read. Missing parts
        take what the box says: the centroid its centre, the area its size; peak and mean 0."""
        try:
            x, y, w, h = (int(v) for v in raw["bbox"])
            cx, cy = (float(v) for v in raw.get("centroid") or (x + w / 2, y + h / 2))
            area_px = float(raw.get("area_px", w * h))
            peak, mean = float(raw.get("peak", 0.0)), float(raw.get("mean", 0.0))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        position, area_mm2 = raw.get("position"), _number(raw.get("area_mm2"))
        return cls((x, y, w, h), area_px, peak, mean, (cx, cy), str(position or ""), area_mm2)


@dataclass
class Latency:
    """Milliseconds per step; a step the frame never reached is None (and not published)."""

    prepare: float | None = None  # grab to model input
    wait: float | None = None  # input ready to the backend call (error: grab to the failure)
    infer: float | None = None  # the backend call, shared by a batch
    decide: float | None = None  # regions, verdict, full-resolution map of a reject
    total: float | None = None  # grab to stored

    def to_payload(self) -> dict:
        steps = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: round(ms, 2) for name, ms in steps.items() if ms is not None}

    @classmethod
    def from_payload(cls, raw: Any) -> Latency:
        if not isinstance(raw, dict):
            return cls()
        return cls(**{f.name: _number(raw.get(f.name)) for f in fields(cls)})


def verdict_payload(
    verdict: str,
    image_score: float | None,
    defect_area_px: float | None,
    regions: list[Region],
    thresholds: dict | None,
) -> dict:
    """The verdict's part of a result: also what ``inspector predict`` writes beside each
    image. ``thresholds`` as published (``inspector.vision.decision.published_thresholds``)."""
    return {
        "verdict": verdict,
        "image_score": _rounded(image_score, SCORE_DECIMALS),
        "defect_area_px": _rounded(defect_area_px, 1),
        "regions": [r.to_payload() for r in regions],
        "thresholds": thresholds,
    }


@dataclass(kw_only=True)
class Result:
    """The verdict on one frame with everything a consumer needs to act on it and trace it.

    ``verdict`` is ``pass``, ``fail`` or ``error`` (``error`` says why). ``thresholds`` are
    the recipe's as published (``inspector.vision.decision.published_thresholds``).
    ``regions`` is None only in a record from a station that stored none.
    """

    line: str | None
    station: str | None
    cell_id: str | None
    frame_id: str | None
    ts: str | None  # when the frame was grabbed, ISO-8601 UTC with milliseconds
    verdict: str
    product: str | None = None
    model_id: str | None = None
    backend: str | None = None
    source_kind: str | None = None
    source_meta: dict = field(default_factory=dict)  # the source's plain facts about the frame
    error: str | None = None
    width: int | None = None
    height: int | None = None
    image_score: float | None = None
    defect_area_px: float | None = None
    regions: list[Region] | None = field(default_factory=list)
    thresholds: dict | None = None
    latency: Latency = field(default_factory=Latency)
    schema: str = RESULT_SCHEMA

    def __post_init__(self) -> None:
        # the published precision, so that alarms and the drift check see what consumers see
        self.image_score = _rounded(self.image_score, SCORE_DECIMALS)
        self.defect_area_px = _rounded(self.defect_area_px, 1)

    def to_payload(self) -> dict:
        """The JSON object stored and published: a decided frame carries its size, an
        ``error`` result its reason instead."""
        head = {
            "schema": self.schema,
            "line": self.line,
            "station": self.station,
            "cell_id": self.cell_id,
            "frame_id": self.frame_id,
            "ts": self.ts,
            "product": self.product,
            "model_id": self.model_id,
            "backend": self.backend,
            "source": {"kind": self.source_kind, **self.source_meta},
        }
        if self.verdict == "error":
            head |= {"verdict": self.verdict, "error": self.error}
        else:
            head |= {"width": self.width, "height": self.height}
        verdict = verdict_payload(
            self.verdict, self.image_score, self.defect_area_px, self.regions or [], self.thresholds
        )
        return head | verdict | {"latency_ms": self.latency.to_payload()}

    @classmethod
    def from_payload(cls, raw: dict) -> Result:
        """A stored result (or a store row with its result folded in), as well as it can be
        read: unknown keys are ignored, missing or malformed ones read as None."""
        source = raw.get("source")
        meta = dict(source) if isinstance(source, dict) else {}
        regions = raw.get("regions")
        width, height = _number(raw.get("width")), _number(raw.get("height"))
        thresholds = raw.get("thresholds")
        return cls(
            schema=str(raw.get("schema") or RESULT_SCHEMA),
            line=_text(raw.get("line")),
            station=_text(raw.get("station")),
            cell_id=_text(raw.get("cell_id")),
            frame_id=_text(raw.get("frame_id")),
            ts=_text(raw.get("ts")),
            verdict=str(raw.get("verdict") or ""),
            product=_text(raw.get("product")),
            model_id=_text(raw.get("model_id")),
            backend=_text(raw.get("backend")),
            source_kind=_text(meta.pop("kind", None)),
            source_meta=meta,
            error=_text(raw.get("error")),
            width=None if width is None else int(width),
            height=None if height is None else int(height),
            image_score=_number(raw.get("image_score")),
            defect_area_px=_number(raw.get("defect_area_px")),
            regions=(
                [r for r in map(Region.from_payload, regions) if r is not None]
                if isinstance(regions, list)
                else None
            ),
            thresholds=thresholds if isinstance(thresholds, dict) else None,
            latency=Latency.from_payload(raw.get("latency_ms")),
        )


_NUMBER_OR_NULL = {"type": ["number", "null"]}
_STRING_OR_NULL = {"type": ["string", "null"]}
REGION_JSON_SCHEMA: dict = {
    "type": "object",
    "required": [f.name for f in fields(Region)],
    "additionalProperties": False,
    "properties": {
        "bbox": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
        "area_px": {"type": "number"},
        "peak": {"type": "number"},
        "mean": {"type": "number"},
        "centroid": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        "position": {"type": "string"},
        "area_mm2": _NUMBER_OR_NULL,
    },
}
JSON_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": RESULT_SCHEMA,
    "title": "The result of one frame (docs/mqtt.md)",
    "type": "object",
    "required": [
        "schema",
        "line",
        "station",
        "cell_id",
        "frame_id",
        "ts",
        "product",
        "model_id",
        "backend",
        "source",
        "verdict",
        "image_score",
        "defect_area_px",
        "regions",
        "thresholds",
        "latency_ms",
    ],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": RESULT_SCHEMA},
        "line": {"type": "string"},
        "station": {"type": "string"},
        "cell_id": {"type": "string"},
        "frame_id": {"type": "string"},
        "ts": {"type": "string"},
        "product": _STRING_OR_NULL,
        "model_id": _STRING_OR_NULL,
        "backend": _STRING_OR_NULL,
        "source": {
            "type": "object",
            "required": ["kind"],
            "properties": {"kind": {"type": "string"}},
        },
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "verdict": {"enum": list(VERDICTS)},
        "error": {"type": "string"},
        "image_score": _NUMBER_OR_NULL,
        "defect_area_px": _NUMBER_OR_NULL,
        "regions": {"type": "array", "items": REGION_JSON_SCHEMA},
        "thresholds": {"type": ["object", "null"]},
        "latency_ms": {
            "type": "object",
            "additionalProperties": False,
            "properties": {f.name: {"type": "number"} for f in fields(Latency)},
        },
    },
    # a decided frame has its size; an error result says why instead
    "if": {"properties": {"verdict": {"const": "error"}}},
    "then": {"required": ["error"]},
    "else": {"required": ["width", "height"]},
}
