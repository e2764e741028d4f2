"""Checks that a language model's answer agrees with the measured facts.

Catches the contradictions that matter to a technician and that can be found reliably: a
defect placed where no region is ("lower left" when the regions are upper centre and lower
centre) and a wrong count ("there are three defects" when two were measured). Anything the
check cannot read is let through; the facts stay on the page beside the answer anyway.

Example:
    >>> from inspector.explain.facts import facts_from_map
    >>> from models.recipe import Thresholds
    >>> amap = np.zeros((300, 300), np.float32); amap[20:60, 130:170] = 0.9
    >>> facts = facts_from_map(amap, Thresholds())
    >>> contradictions(facts, "There are two defects, one in the lower left.")
    ['says 2 defects, the facts have 1', 'places a defect in the lower left, where none was found']
"""

from __future__ import annotations

import re

import numpy as np  # noqa: F401  (doctest)

from inspector.explain.facts import NUMBER_WORDS, Facts

_SYNONYMS = {"center": "centre", "top": "upper", "bottom": "lower", "middle": "centre"}
_PLACE = re.compile(r"\b(upper|lower|centre) (left|right|centre)\b")
_NUMBER = "|".join(NUMBER_WORDS) + r"|\d+"
_COUNT = re.compile(
    rf"\b(?:there (?:is|are)|found|detected|shows?|has|have|with|see) ({_NUMBER}) "
    r"(?:\w+ )?(?:defects?|regions?|anomal(?:y|ies)|defect regions?)\b"
)

_NEGATION = re.compile(r"\b(no|not|none|clean|without|free|normal|nothing|unlike|except)\b")


def _normal(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return " ".join(_SYNONYMS.get(w, w) for w in words)


def contradictions(facts: Facts, text: str) -> list[str]:
    """What in ``text`` disagrees with ``facts`` (empty when nothing does)."""
    norm = _normal(text)
    problems = []
    for m in _COUNT.finditer(norm):
        word = m.group(1)
        n = NUMBER_WORDS.index(word) if word in NUMBER_WORDS else int(word)
        if n != facts.count:
            problems.append(f"says {n} defects, the facts have {facts.count}")
    positions = {r.position for r in facts.regions}
    for clause in re.split(r"[.;:!?,]", text):
        clause = _normal(clause)
        if _NEGATION.search(clause):  # "the lower right is clean" places nothing there
            continue
        for m in _PLACE.finditer(clause):
            phrase = "centre" if m.group(0) == "centre centre" else m.group(0)
            if phrase not in positions and phrase != "centre":
                problems.append(f"places a defect in the {phrase}, where none was found")
    return list(dict.fromkeys(problems))
