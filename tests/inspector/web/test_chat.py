"""Chat answers from the explainer's backends, with the template as the fallback."""

from __future__ import annotations

from inspector.explain.backends import Backend, BackendError, RejectContext
from inspector.store import Store
from inspector.web.chat import ExplainerChat, template_chat
from models.recipe import Prompts, Recipe, Thresholds
from tests.inspector.web.conftest import FRAME_SHAPE


class Recording(Backend):
    """A backend that answers from what it was given, so the test can see it."""

    name = "recording"

    def __init__(self) -> None:
        self.seen: list[tuple[RejectContext, list, str]] = []

    def reply(self, ctx: RejectContext, history: list, question: str) -> str:
        self.seen.append((ctx, history, question))
        return f"{len(ctx.facts.regions)} regions; {len(history)} earlier turns"


class Broken(Backend):
    name = "broken"

    def reply(self, ctx: RejectContext, history: list, question: str) -> str:
        raise BackendError("server down")


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


def test_backend_gets_facts_frame_map_and_history(store: Store) -> None:
    backend = Recording()
    chat = ExplainerChat(store.data_dir, lambda: backend)
    history = [{"role": "user", "text": "hi", "ts": "t"}, {"role": "assistant", "text": "yo"}]
    assert chat(store.reject("f-2"), history, "Where?") == "2 regions; 2 earlier turns"
    ctx, turns, question = backend.seen[0]
    assert ctx.image.shape[:2] == FRAME_SHAPE and ctx.amap.shape == FRAME_SHAPE
    assert turns == [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "yo"}]
    assert question == "Where?"


def test_a_failing_backend_is_answered_by_the_template(store: Store) -> None:
    chat = ExplainerChat(store.data_dir, Broken)
    reject = store.reject("f-1")
    answer = chat(reject, [], "How big is region 1?")
    assert "Region 1 (upper left) covers 900 px" in answer
    assert template_chat(reject, [], "How big is region 1?").startswith("Region 1 (upper left)")


def test_sizes_in_mm_with_the_bundles_pixel_pitch(store: Store) -> None:
    chat = ExplainerChat(store.data_dir, None, recipe(pitch_mm=0.1))
    answer = chat(store.reject("f-1"), [], "How big is region 1?")
    assert "900 px (9 mm^2)" in answer
