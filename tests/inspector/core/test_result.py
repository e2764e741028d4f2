"""The typed result: its payload is the published one, key for key and in order, it matches
its JSON schema, and any stored record reads back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from inspector.core.result import JSON_SCHEMA, Latency, Region, Result
from inspector.sources.base import Frame
from inspector.station.frames import Grabbed, ResultMaker
from inspector.vision.decision import decide
from models.recipe import Thresholds

TS = datetime(2026, 11, 25, 9, 20, 14, 647058, tzinfo=UTC)


class FakePredictor:
    model_id = "tiny-3abad2ce23a8"

    class backend:  # noqa: N801 (an attribute with a name, as a backend has)
        name = "torch"

    class recipe:  # noqa: N801
        thresholds = Thresholds(pixel=0.27204, image=0.272)


class FakeInspection:
    def __init__(self) -> None:
        amap = np.zeros((192, 256), np.float32)
        amap[140:150, 125:140] = 0.320341
        self.decision = decide(amap, 0.320341, (384, 512), FakePredictor.recipe.thresholds)
        self.frame_shape = (384, 512, 3)


def grabbed(cell: str, **kw: object) -> Grabbed:
    meta = {"serial": "0815", "bit_depth": 8, "path": "a\nb.png", "source": "pylon"}
    return Grabbed(Frame(cell, None, timestamp=TS, meta=meta), 0.0, **kw)


def made() -> tuple[dict, dict]:
    maker = ResultMaker("demo", "station-1", "pylon")
    g = grabbed("DEMO-1", t_prepared=0.00312, predictor=FakePredictor(), product="pouch")
    fail = maker.decided(g, FakeInspection(), None, (0.0315, 0.0726, 0.0727, 0.0795)).result
    fail.latency.total = 79.5612
    error = maker.error(grabbed("DEMO-2"), "corrupt file", 0.0123).result
    error.latency.total = 12.3
    return fail.to_payload(), error.to_payload()


def test_the_payload_has_the_published_keys_in_their_order() -> None:
    fail, error = made()
    head = ["schema", "line", "station", "cell_id", "frame_id", "ts", "product", "model_id",
            "backend", "source"]  # fmt: skip
    tail = ["image_score", "defect_area_px", "regions", "thresholds", "latency_ms"]
    assert list(fail) == head + ["width", "height", "verdict"] + tail
    assert list(error) == head + ["verdict", "error"] + tail
    assert fail["source"] == {"kind": "pylon", "serial": "0815", "bit_depth": 8, "path": "a_b.png"}
    assert fail["ts"] == "2026-11-25T09:20:14.647Z"
    assert (fail["width"], fail["height"], fail["image_score"]) == (512, 384, 0.3203)
    assert list(fail["regions"][0]) == [
        "bbox", "area_px", "peak", "mean", "centroid", "position", "area_mm2"
    ]  # fmt: skip
    assert fail["thresholds"] == {
        "pixel": 0.272, "image": 0.272, "min_defect_area_px": 0.0, "calibrated": False
    }  # fmt: skip
    assert fail["latency_ms"] == {
        "prepare": 3.12, "wait": 28.38, "infer": 41.1, "decide": 6.8, "total": 79.56
    }  # fmt: skip
    assert error["latency_ms"] == {"wait": 12.3, "total": 12.3}
    assert (error["image_score"], error["regions"], error["thresholds"]) == (None, [], None)
    assert (error["model_id"], error["backend"], error["error"]) == (None, None, "corrupt file")


def test_a_payload_reads_back_to_itself() -> None:
    for payload in made():
        again = Result.from_payload(json.loads(json.dumps(payload))).to_payload()
        assert json.dumps(again) == json.dumps(payload)


def check(value: object, schema: dict, where: str = "result") -> None:
    """The few JSON-schema words the result's schema uses."""
    kinds = {"string": str, "integer": int, "number": (int, float), "object": dict,
             "array": list, "null": type(None), "boolean": bool}  # fmt: skip
    if "const" in schema:
        assert value == schema["const"], where
    if "enum" in schema:
        assert value in schema["enum"], where
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        assert any(isinstance(value, kinds[t]) for t in types), (where, value)
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}.{key} missing"
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(properties), (where, set(value) - set(properties))
        for key, sub in properties.items():
            if key in value:
                check(value[key], sub, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(item, schema["items"], f"{where}[{i}]")


def test_the_payloads_match_the_json_schema() -> None:
    fail, error = made()
    for payload in (fail, error):
        check(payload, JSON_SCHEMA)
        branch = JSON_SCHEMA["then"] if payload["verdict"] == "error" else JSON_SCHEMA["else"]
        check(payload, branch)
    with pytest.raises(AssertionError):
        check({**fail, "extra": 1}, JSON_SCHEMA)


def test_any_stored_record_reads_back() -> None:
    old = Result.from_payload({"frame_id": "f-3", "verdict": "pass", "station": "S1"})
    assert (old.frame_id, old.verdict, old.regions, old.width, old.image_score) == (
        "f-3", "pass", None, None, None
    )  # fmt: skip
    odd = Result.from_payload(
        {
            "width": "wide",
            "image_score": float("nan"),
            "thresholds": ["not", "a", "dict"],
            "source": "a string",
            "latency_ms": {"total": "slow", "wait": 3},
            "regions": [
                {"position": "lower right"},  # no bbox
                {"bbox": [1, 2, "x", 4]},
                "not a region",
                {"bbox": [10, 20, 30, 40], "peak": 0.8, "area_mm2": "n/a"},
            ],
        }
    )
    assert (odd.width, odd.image_score, odd.thresholds, odd.source_meta) == (None, None, None, {})
    assert odd.latency == Latency(wait=3.0)
    assert odd.regions == [Region((10, 20, 30, 40), 1200.0, 0.8, 0.0, (25.0, 40.0), "", None)]
