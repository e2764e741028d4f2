"""The explainer worker on a real SQLite store: order, storage, retries and the fallback."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.explain.config import ExplainerConfig
from inspector.explain.worker import ExplainWorker, reject_context
from inspector.explain.writers import ExplanationWriter, TemplateWriter, WriterError
from inspector.store.db import Store
from inspector.vision.decision import decide
from models.recipe import Thresholds
from tests.conftest import textured


class FailingWriter(ExplanationWriter):
    name = "openai"

    def __init__(self) -> None:
        self.calls = 0

    def reply(self, ctx, history, question) -> str:
        self.calls += 1
        raise WriterError("chat server unreachable")


class EchoWriter(ExplanationWriter):
    name = "echo"

    def reply(self, ctx, history, question) -> str:
        return f"{ctx.facts.count} region(s) at {ctx.facts.regions[0].position}"


def record_reject(store: Store, frame_id: str, box: tuple[int, int, int, int]) -> None:
    """A failed result as the daemon stores it: payload, frame and full-resolution map."""
    image = textured(240, 320)
    amap = np.zeros((240, 320), np.float32)
    x, y, w, h = box
    cv2.rectangle(amap, (x, y), (x + w - 1, y + h - 1), 0.9, -1)
    result = {
        "frame_id": frame_id,
        "cell_id": f"cell-{frame_id}",
        "product": "pouch cell",
        "width": 320,
        "height": 240,
        **decide(amap, 0.9, amap.shape, Thresholds()).to_dict(),
    }
    store.record(result, image, amap)


@pytest.fixture()
def store(tmp_path: Path):
    s = Store(tmp_path / "data")
    yield s
    s.close()


def test_jobs_are_explained_in_order_stored_and_published(store: Store) -> None:
    record_reject(store, "f1", (10, 10, 30, 30))
    record_reject(store, "f2", (250, 180, 40, 40))
    published = []
    worker = ExplainWorker(
        store, EchoWriter(), ExplainerConfig(), publish=lambda *a: published.append(a)
    )
    assert worker.run_once().frame_id == "f1"
    assert worker.run_once().frame_id == "f2"
    assert worker.run_once() is None
    assert store.explanation("f1")["text"] == "1 region(s) at upper left"
    assert store.explanation("f2")["backend"] == "echo"
    assert published == [
        ("cell-f1", "f1", "1 region(s) at upper left", "echo"),
        ("cell-f2", "f2", "1 region(s) at lower right", "echo"),
    ]
    assert store.pending_jobs() == 0


def test_a_failing_writer_is_retried_then_the_template_explains_the_job(store: Store) -> None:
    record_reject(store, "f1", (140, 10, 40, 40))
    cfg = ExplainerConfig.model_validate({"retry": {"max_attempts": 3, "backoff_s": 0.0}})
    writer = FailingWriter()
    worker = ExplainWorker(store, writer, cfg)

    first, second, third = worker.run_once(), worker.run_once(), worker.run_once()
    assert [o.state for o in (first, second, third)] == ["retry", "retry", "done"]
    assert writer.calls == 3 and worker.run_once() is None
    explanation = store.explanation("f1")
    assert explanation["backend"] == "template"
    assert "Region 1 (upper centre)" in explanation["text"] and "1,600 px" in explanation["text"]
    assert store.pending_jobs() == 0


def test_a_failed_job_waits_for_its_back_off(store: Store) -> None:
    record_reject(store, "f1", (10, 10, 30, 30))
    cfg = ExplainerConfig.model_validate({"retry": {"max_attempts": 2, "backoff_s": 60.0}})
    worker = ExplainWorker(store, FailingWriter(), cfg)
    assert worker.run_once().state == "retry"
    assert worker.run_once() is None  # not due for a minute
    assert store.pending_jobs() == 1 and store.explanation("f1") is None


def test_a_reject_whose_files_are_gone_is_explained_from_its_result(store: Store) -> None:
    record_reject(store, "f1", (10, 10, 30, 30))
    for p in (store.rejects_dir).rglob("*"):
        if p.is_file():
            p.unlink()
    worker = ExplainWorker(store, TemplateWriter(), ExplainerConfig())
    assert worker.run_once().writer == "template"
    assert "Region 1 (upper left)" in store.explanation("f1")["text"]


def test_a_failure_no_retry_can_cure_goes_to_the_template_at_once(store: Store) -> None:
    class NeedsImage(ExplanationWriter):
        name = "batterygpt"

        def reply(self, ctx, history, question) -> str:
            raise WriterError("batterygpt needs the reject's image", permanent=True)

    record_reject(store, "f1", (10, 10, 30, 30))
    cfg = ExplainerConfig.model_validate({"retry": {"max_attempts": 5, "backoff_s": 60.0}})
    outcome = ExplainWorker(store, NeedsImage(), cfg).run_once()
    assert (outcome.state, outcome.writer) == ("done", "template")


def test_an_explanation_that_contradicts_the_facts_is_replaced_by_the_template(
    store: Store,
) -> None:
    class Confabulating(ExplanationWriter):
        name = "openai"

        def reply(self, ctx, history, question) -> str:
            return "There are three defects, the worst in the lower right."

    record_reject(store, "f1", (10, 10, 30, 30))
    outcome = ExplainWorker(store, Confabulating(), ExplainerConfig()).run_once()
    assert (outcome.state, outcome.writer) == ("done", "template")
    assert store.explanation("f1")["text"].startswith("This pouch cell was rejected: one defect")


@pytest.mark.parametrize("with_files", [True, False])
def test_a_malformed_result_is_still_explained_and_done(store: Store, with_files: bool) -> None:
    """A region without a box and a non-numeric threshold are read tolerantly, not fatally."""
    amap = np.zeros((240, 320), np.float32)
    amap[10:40, 10:40] = 0.9
    result = {
        "frame_id": "f1",
        "cell_id": "cell-f1",
        "product": "pouch cell",
        "width": 320,
        "height": 240,
        "verdict": "fail",
        "image_score": 0.9,
        "thresholds": {"pixel": "high", "image": 0.5},
        "regions": [
            {"position": "lower right", "peak": 0.9},  # no bbox
            {"bbox": [10, 10, 30, 30], "position": "upper left", "area_px": 900, "peak": 0.9},
        ],
    }
    store.record(result, textured(240, 320) if with_files else None, amap if with_files else None)
    outcome = ExplainWorker(store, EchoWriter(), ExplainerConfig()).run_once()
    assert outcome.state == "done"
    assert store.pending_jobs() == 0
    assert store.explanation("f1")["text"] == "1 region(s) at upper left"


def test_a_map_of_another_size_is_brought_to_the_frame(tmp_path: Path) -> None:
    """As the page draws it: the frame is kept and the map (squeezed, NaN as 0) resized."""
    image_path, map_path = tmp_path / "frame.png", tmp_path / "map.npy"
    cv2.imwrite(str(image_path), textured(240, 320))
    amap = np.zeros((1, 120, 160), np.float32)
    amap[0, 5:20, 5:20], amap[0, 100, 150] = 0.9, np.nan
    np.save(map_path, amap)
    ctx = reject_context({"frame_id": "f1", "width": 320, "height": 240}, image_path, map_path)
    assert ctx.image is not None and ctx.amap.shape == (240, 320)
    assert not np.isnan(ctx.amap).any()
    assert ctx.facts.count == 1 and ctx.facts.regions[0].position == "upper left"
