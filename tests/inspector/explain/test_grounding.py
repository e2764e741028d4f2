"""The grounding check: answers that contradict the facts are caught, agreeing ones pass."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.explain.facts import facts_from_map
from inspector.explain.grounding import contradictions
from models.recipe import Thresholds


@pytest.fixture(scope="module")
def facts():
    amap = np.zeros((300, 400), np.float32)
    cv2.circle(amap, (200, 50), 20, 0.9, -1)
    amap[230:250, 190:210] = 0.7
    return facts_from_map(amap, Thresholds())  # upper centre and lower centre


@pytest.mark.parametrize(
    "text",
    [
        "Yes, two, upper centre and lower centre.",
        "There are 2 defects, in the top center and the bottom center.",
        "The lower right corner is clean; the defects are in the upper and lower centre.",
        "A round bubble near the upper centre edge.",
    ],
)
def test_answers_that_agree_with_the_facts_pass(facts, text: str) -> None:
    assert contradictions(facts, text) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("I found three defect regions.", "says 3 defects, the facts have 2"),
        ("There is one defect.", "says 1 defects, the facts have 2"),
        ("A bubble sits in the lower left.", "places a defect in the lower left"),
    ],
)
def test_answers_that_contradict_the_facts_are_caught(facts, text: str, problem: str) -> None:
    assert any(p.startswith(problem) for p in contradictions(facts, text))
