"""The template writer: a complete explanation and follow-up answers from the facts."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.explain.facts import facts_from_map
from inspector.explain.writers import TemplateWriter
from inspector.explain.writers.base import RejectContext
from models.recipe import Thresholds


def two_blob_context() -> RejectContext:
    amap = np.zeros((300, 400), np.float32)
    cv2.circle(amap, (200, 50), 20, 0.9, -1)
    amap[230:250, 190:210] = 0.7
    return RejectContext(facts_from_map(amap, Thresholds(), 0.1, "pouch cell"))


def test_the_explanation_names_every_region_with_position_and_size() -> None:
    ctx = two_blob_context()
    text = TemplateWriter().explain(ctx)
    assert "two defect regions" in text
    assert "Region 1 (upper centre)" in text and "Region 2 (lower centre)" in text
    assert "400 px (4.00 mm^2)" in text  # the 20x20 square at 0.1 mm per pixel
    assert "pouch cell" in text


def test_follow_up_questions_are_answered_from_the_facts() -> None:
    ctx = two_blob_context()
    t = TemplateWriter()
    big = t.reply(ctx, [], "How big is the upper bubble?")
    assert big.startswith("Region 1 (upper centre) covers") and "lower" not in big
    assert "mm^2" in big
    assert t.reply(ctx, [], "Is there any anomaly?") == (
        "Yes: two defect regions, in the upper centre and lower centre."
    )
    assert "Region 2 (lower centre) peaks at an anomaly score of 0.70" in t.reply(
        ctx, [], "how confident are you about the second one?"
    )
    assert "no defect region there" in t.reply(ctx, [], "what about the lower left corner?")
    assert "blob-like" in t.reply(ctx, [], "what shape is the bottom defect?")


def test_a_clean_map_is_explained_as_having_no_defect() -> None:
    ctx = RejectContext(facts_from_map(np.zeros((64, 64), np.float32), Thresholds()))
    assert TemplateWriter().explain(ctx).startswith("No defect region was found")


def test_bad_explainer_settings_name_the_key() -> None:
    import pytest
    from pydantic import ValidationError

    from inspector.explain.config import ExplainerConfig

    with pytest.raises(ValidationError, match="base_url must start with http"):
        ExplainerConfig.model_validate({"openai": {"base_url": "localhost:8080"}})
    with pytest.raises(ValidationError, match="backend"):
        ExplainerConfig.model_validate({"backend": "gpt5"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ExplainerConfig.model_validate({"retry": {"attempts": 3}})
    assert ExplainerConfig().retry.delay(3) == 20.0  # 5 s doubling: 5, 10, 20


def test_relative_model_paths_are_relative_to_the_config_file(tmp_path) -> None:
    from inspector.explain.config import ExplainerConfig

    cfg = ExplainerConfig.model_validate(
        {
            "backend": "batterygpt",
            "batterygpt": {"llm_path": "models/vicuna", "chat_weights": "/abs.st"},
        }
    ).resolve_paths(tmp_path)
    assert cfg.batterygpt.llm_path == tmp_path / "models/vicuna"
    assert str(cfg.batterygpt.chat_weights) == "/abs.st"


def test_it_refers_to_the_region_asked_about_before() -> None:
    ctx = two_blob_context()
    history = [
        {"role": "user", "text": "What is in the lower centre?"},
        {"role": "assistant", "text": "A blob."},
    ]
    answer = TemplateWriter().reply(ctx, history, "How big is it?")
    assert answer.startswith("Region 2 (lower centre) covers 400 px") and "upper" not in answer


def test_a_question_it_cannot_answer_gets_what_it_can_say_not_the_explanation_again() -> None:
    ctx = two_blob_context()
    t = TemplateWriter()
    explanation = t.explain(ctx)
    answer = t.reply(ctx, [], "Is this a scratch or a dent? Should I scrap the cell?")
    assert "Region 1 (upper centre) is compact" in answer  # the shape: what it can answer
    assert "for you and the line's rules to decide" in answer  # the disposition: what it cannot
    assert explanation not in answer and len(answer) < len(explanation) + 200
    other = t.reply(ctx, [], "What is the weather like?")
    assert "I can answer from the measured regions only" in other and explanation not in other
