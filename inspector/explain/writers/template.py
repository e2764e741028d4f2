"""The template writer: explanations and answers built from the facts alone, no model.

Always available, and the fallback when a language model fails. Follow-up questions are
matched by keywords: which region ("upper", "second", "largest") and what about it (size,
place, shape, score, count).

Example:
    >>> from inspector.explain.facts import facts_from_map
    >>> from models.recipe import Thresholds
    >>> amap = np.zeros((300, 300), np.float32); amap[20:60, 130:170] = 0.9
    >>> ctx = RejectContext(facts_from_map(amap, Thresholds(), 0.1, "pouch cell"))
    >>> TemplateWriter().reply(ctx, [], "How big is the upper bubble?")
    'Region 1 (upper centre) covers 1,600 px (16.00 mm^2), about 4 mm long and 4 mm wide.'
"""

from __future__ import annotations

import re

import numpy as np  # noqa: F401  (doctest)

from inspector.explain.facts import Facts, RegionFacts, number_word
from inspector.explain.writers.base import (
    INITIAL_QUESTION,
    ChatTurn,
    ExplanationWriter,
    RejectContext,
)

ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6}
SCRATCH_NOUNS = {"scratch", "scratches", "line", "crack", "mark"}
BLOB_NOUNS = {"bubble", "bubbles", "spot", "dent", "blob", "particle", "dot", "hole"}
SYNONYMS = {"top": "upper", "bottom": "lower", "center": "centre", "middle": "centre"}
INTENTS: dict[str, tuple[str, ...]] = {
    "count": ("how many", "number of", "count"),
    "size": ("big", "large", "size", "area", "long", "wide", "width", "length", "mm", "small"),
    "where": ("where", "position", "locat", "which part", "which side"),
    "shape": (
        "shape",
        "elongat",
        "look like",
        "what kind",
        "type",
        "what is it",
        "scratch or",
        "or a",
    ),
    "score": ("score", "confiden", "sure", "certain", "severe", "strong", "probab"),
    "box": ("box", "coordinate", "pixel position", "bbox"),
    "anomaly": ("any anomal", "any defect", "anything wrong", "is there", "are there", "defect?"),
    "decision": (
        "scrap",
        "should i",
        "should we",
        "discard",
        "throw",
        "ship",
        "rework",
        "keep the",
        "release",
        "is it ok",
        "is it safe",
        "root cause",
        "why did it happen",
        "what caused",
    ),
}
CAN_ANSWER = (
    "I can answer from the measured regions only: how many there are, where, how big, what "
    "shape (elongated like a scratch, or compact like a dent, bubble or particle) and how "
    "strong the anomaly score is."
)


def _words(text: str) -> list[str]:
    return [SYNONYMS.get(w, w) for w in re.findall(r"[a-z0-9]+", text.lower())]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _describe_region(r: RegionFacts) -> str:
    x, y, w, h = r.bbox
    kind = "an elongated, scratch-like mark" if r.shape == "scratch-like" else "a blob-like spot"
    return (
        f"Region {r.index} ({r.position}) is {kind} of {r.size_text()}, "
        f"boxed at x={x}, y={y}, {w} x {h} px; peak score {r.peak:.2f}, mean {r.mean:.2f}."
    )


def describe(facts: Facts) -> str:
    """A complete explanation of the facts, one sentence per region."""
    noun = facts.product
    t = facts.thresholds
    if not facts.regions:
        return (
            f"No defect region was found on this {noun}: the anomaly score is "
            f"{facts.image_score:.2f} and no area reaches the limits "
            f"(pixel {t.pixel:.2f}, image {t.image:.2f})."
        )
    n = facts.count
    places = _join([r.position for r in facts.regions])
    head = (
        f"This {noun} was rejected: {number_word(n)} defect region{'s' if n > 1 else ''} "
        f"({places}), anomaly score {facts.image_score:.2f} against a limit of {t.image:.2f}."
    )
    return " ".join([head, *(_describe_region(r) for r in facts.regions)])


def _referenced(facts: Facts, words: list[str], text: str) -> list[RegionFacts] | None:
    """Regions the question points at (None when it names none)."""
    regions = facts.regions
    for i, w in enumerate(words):
        if w in ORDINALS and ORDINALS[w] <= len(regions):
            return [regions[ORDINALS[w] - 1]]
        if w in ("region", "defect", "number", "no") and i + 1 < len(words):
            nxt = words[i + 1]
            if nxt.isdigit() and 1 <= int(nxt) <= len(regions):
                return [regions[int(nxt) - 1]]
    if regions and re.search(r"\b(largest|biggest)\b", text):
        return [max(regions, key=lambda r: r.area_px)]
    if regions and re.search(r"\bsmallest\b", text):
        return [min(regions, key=lambda r: r.area_px)]
    if regions and re.search(r"\b(worst|strongest|brightest)\b", text):
        return [max(regions, key=lambda r: r.peak)]
    shaped = regions
    if SCRATCH_NOUNS & set(words):
        shaped = [r for r in regions if r.shape == "scratch-like"] or regions
    elif BLOB_NOUNS & set(words):
        shaped = [r for r in regions if r.shape == "blob-like"] or regions
    place = {w for w in words if w in ("upper", "lower", "left", "right", "centre")}
    if not place:
        return shaped if len(shaped) < len(regions) else None
    return [r for r in shaped if place <= set(r.position.split())]


def _answer_about(r: RegionFacts, intent: str) -> str:
    x, y, w, h = r.bbox
    label = f"Region {r.index} ({r.position})"
    if intent == "size":
        return f"{label} covers {r.size_text()}."
    if intent == "where":
        cx, cy = r.centroid
        return (
            f"{label} is centred at x={cx:.0f}, y={cy:.0f} px, boxed at x={x}, y={y}, {w} x {h} px."
        )
    if intent == "box":
        return f"{label}: box x={x}, y={y}, width {w} px, height {h} px."
    if intent == "shape":
        if r.shape == "scratch-like":
            how = (
                f"elongated (length/width {r.elongation:.1f}), scratch-like, "
                f"at {r.angle_deg:.0f} deg"
            )
        else:
            how = f"compact (length/width {r.elongation:.1f}), blob-like: a spot, dent or bubble"
        return f"{label} is {how}."
    if intent == "score":
        return f"{label} peaks at an anomaly score of {r.peak:.2f} (mean {r.mean:.2f})."
    return _describe_region(r)


def _summary(facts: Facts) -> str:
    """One sentence: how many regions, where, and the score against the limit."""
    n = facts.count
    return (
        f"The station found {number_word(n)} defect region{'s' if n > 1 else ''} "
        f"({_join([r.position for r in facts.regions])}), anomaly score "
        f"{facts.image_score:.2f} against a limit of {facts.thresholds.image:.2f}."
    )


def _not_mine(facts: Facts) -> str:
    """What the template cannot say: the disposition of the cell and the cause of a defect."""
    return (
        "Whether to scrap, rework or release the cell, and what caused the defect, is for you "
        "and the line's rules to decide; the measurements cannot tell. "
        f"{_summary(facts)}"
    )


class TemplateWriter(ExplanationWriter):
    """Explanations from the facts with fixed sentences; needs nothing and cannot fail."""

    name = "template"

    def explain(self, ctx: RejectContext) -> str:
        return describe(ctx.facts)

    def reply(self, ctx: RejectContext, history: list[ChatTurn], question: str) -> str:
        facts = ctx.facts
        if question == INITIAL_QUESTION:
            return describe(facts)
        text = question.lower()
        words = _words(question)
        intents = [k for k, keys in INTENTS.items() if any(key in text for key in keys)]
        regions = _referenced(facts, words, " ".join(words))
        for turn in reversed(history):  # "how big is it?" means the region asked about last
            if regions is not None or not re.search(r"\b(it|its|that|this|one)\b", text):
                break
            if turn["role"] == "user":
                earlier = _words(turn["text"])
                regions = _referenced(facts, earlier, " ".join(earlier)) or None
        if not facts.regions:
            return describe(facts)
        if regions == []:
            return (
                f"There is no defect region there; the {facts.count} region"
                f"{'s are' if facts.count > 1 else ' is'} in the "
                f"{_join([r.position for r in facts.regions])}."
            )
        decision = "decision" in intents
        intents = [i for i in intents if i != "decision"]
        if decision:
            return " ".join([_not_mine(facts), *self._facts_asked(facts, intents, regions)])
        if not intents and regions is None:
            if any(k in text for k in ("tell me", "explain", "describe", "detail", "summar")):
                return describe(facts)
            return f"{_summary(facts)} {CAN_ANSWER}"
        return " ".join(self._facts_asked(facts, intents, regions))

    @staticmethod
    def _facts_asked(
        facts: Facts, intents: list[str], regions: list[RegionFacts] | None
    ) -> list[str]:
        """The sentences that answer ``intents`` about ``regions`` (all when None)."""
        if "count" in intents or ("anomaly" in intents and regions is None):
            n = facts.count
            answer = (
                f"{number_word(n)} defect region{'s' if n > 1 else ''}, in the "
                f"{_join([r.position for r in facts.regions])}."
            )
            return [f"Yes: {answer}" if "count" not in intents else answer.capitalize()]
        about = [i for i in intents if i not in ("count", "anomaly")]
        if regions is None:
            if not about:
                return []
            regions = facts.regions
        if not about:
            return [_describe_region(r) for r in regions]
        return [_answer_about(r, i) for r in regions for i in about]
