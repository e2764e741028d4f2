"""Chat answers from the explainer's writers, with the template as the fallback."""

from __future__ import annotations

from inspector.explain.writers import ExplanationWriter, RejectContext, WriterError
from inspector.store.db import Store
from inspector.web.chat import ExplainerChat, template_chat
from models.recipe import Prompts, Recipe, Thresholds
from tests.inspector.web.conftest import FRAME_SHAPE


class Recording(ExplanationWriter):
    """A writer that answers from what it was given, so the test can see it."""

    name = "recording"

    def __init__(self) -> None:
        self.seen: list[tuple[RejectContext, list, str]] = []

    def reply(self, ctx: RejectContext, history: list, question: str) -> str:
        self.seen.append((ctx, history, question))
        return f"{len(ctx.facts.regions)} regions; {len(history)} earlier turns"


class Broken(ExplanationWriter):
    name = "broken"

    def reply(self, ctx: RejectContext, history: list, question: str) -> str:
        raise WriterError("server down")


def recipe(pitch_mm: float) -> Recipe:
    prompts = Prompts(normal_states=["{}"], abnormal_states=["broken {}"], templates=["{}."])
    return Recipe(
        arch="tiny",
        product="pouch cell",
        taps=[0],
        prompts=prompts,
        thresholds=Thresholds(pixel=0.5, image=0.5),
        pixel_pitch_mm=pitch_mm,
        encoder_sha256="0" * 64,
    )


def test_writer_gets_facts_frame_map_and_history(store: Store) -> None:
    writer = Recording()
    chat = ExplainerChat(store.data_dir, lambda: writer)
    history = [{"role": "user", "text": "hi", "ts": "t"}, {"role": "assistant", "text": "yo"}]
    assert chat(store.reject("f-2"), history, "Where?") == "2 regions; 2 earlier turns"
    ctx, turns, question = writer.seen[0]
    assert ctx.image.shape[:2] == FRAME_SHAPE and ctx.amap.shape == FRAME_SHAPE
    assert turns == [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "yo"}]
    assert question == "Where?"


def test_a_failing_writer_is_answered_by_the_template(store: Store) -> None:
    chat = ExplainerChat(store.data_dir, Broken)
    reject = store.reject("f-1")
    answer = chat(reject, [], "How big is region 1?")
    assert "Region 1 (upper left) covers 900 px" in answer
    assert template_chat(reject, [], "How big is region 1?").startswith("Region 1 (upper left)")


def test_sizes_in_mm_with_the_bundles_pixel_pitch(store: Store) -> None:
    chat = ExplainerChat(store.data_dir, None, recipe(pitch_mm=0.1))
    answer = chat(store.reject("f-1"), [], "How big is region 1?")
    assert "900 px (9.00 mm^2)" in answer


class Confabulating(ExplanationWriter):
    name = "confabulating"

    def reply(self, ctx: RejectContext, history: list, question: str) -> str:
        return "There are three defects, the worst in the lower right."


def test_a_writer_that_cannot_be_built_is_tried_once(store: Store) -> None:
    builds: list[int] = []

    def make() -> ExplanationWriter:
        builds.append(1)
        raise RuntimeError("model folder missing")

    chat = ExplainerChat(store.data_dir, make)
    reject = store.reject("f-1")
    for _ in range(3):
        assert "Region 1 (upper left) covers 900 px" in chat(reject, [], "How big is region 1?")
    assert len(builds) == 1


def test_an_answer_that_contradicts_the_facts_is_replaced_by_the_template(store: Store) -> None:
    reject, question = store.reject("f-1"), "How big is region 1?"
    checked = ExplainerChat(store.data_dir, Confabulating)(reject, [], question)
    assert checked == template_chat(reject, [], question)
    assert "three" not in checked
    unchecked = ExplainerChat(store.data_dir, Confabulating, check_facts=False)
    assert unchecked(reject, [], question).startswith("There are three defects")


def test_a_rejects_context_is_measured_once_and_kept(store: Store, monkeypatch) -> None:
    import inspector.explain.worker as worker
    import inspector.web.chat as chat_module

    measured: list[str] = []
    real = worker.reject_context

    def counting(result: dict, *args, **kw):
        measured.append(result["frame_id"])
        return real(result, *args, **kw)

    monkeypatch.setattr(worker, "reject_context", counting)
    monkeypatch.setattr(chat_module, "CONTEXT_CACHE", 1)
    writer = Recording()
    chat = ExplainerChat(store.data_dir, lambda: writer)
    f1, f2 = store.reject("f-1"), store.reject("f-2")
    chat(f1, [], "Where?")
    chat(f1, [], "How big?")
    assert measured == ["f-1"] and writer.seen[0][0] is writer.seen[1][0]
    chat(f2, [], "Where?")  # the cache holds one reject here: f-1 makes way
    chat(f1, [], "Where?")
    assert measured == ["f-1", "f-2", "f-1"]
