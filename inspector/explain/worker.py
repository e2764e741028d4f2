"""The explainer worker: takes reject jobs from the store in order, one at a time, explains them.

A job's explanation is stored (``finish_job``) before the outbox publishes it on the
``explanation`` topic (``inspector.comms.outbox``). A writer that fails gives the job back
with exponential back-off (``fail_job``); on its last attempt the template writer explains
it from the facts, so no reject is left without an explanation. A language model's
explanation that contradicts the measured facts (a wrong count, a defect where none was
found) is replaced by the template's at once.

Example:
    >>> worker = ExplainWorker(store, TemplateWriter(), ExplainerConfig())  # doctest: +SKIP
    >>> while worker.run_once(): pass                                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.core.result import Result
from inspector.explain.config import ExplainerConfig
from inspector.explain.facts import Facts, facts_from_map, facts_from_result, thresholds_of
from inspector.explain.files import read_map
from inspector.explain.grounding import contradictions
from inspector.explain.writers.base import ExplanationWriter, RejectContext, WriterError
from inspector.explain.writers.template import TemplateWriter
from models.image_io import read_image
from models.recipe import Recipe

log = logging.getLogger("inspector.explain")

Publish = Callable[[str, str, str, str], None]  # (cell_id, frame_id, text, writer name)


@dataclass
class Outcome:
    """What happened to one claimed job."""

    frame_id: str
    state: str  # "done" | "retry"
    writer: str | None = None  # the writer's name
    text: str | None = None
    error: str | None = None


def _read_optional(
    read: Callable[[Path], np.ndarray], path: Path | None, what: str, frame_id: object
) -> np.ndarray | None:
    """``read(path)``, or None when no file is stored or it cannot be read (logged)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        return read(Path(path))
    except (OSError, ValueError) as exc:  # ImageError is a ValueError
        log.warning("%s of %s unreadable: %s", what, frame_id, exc)
        return None


def check_answer(facts: Facts, text: str) -> str:
    """``text`` when it agrees with the measured facts.

    Raises:
        WriterError: (permanent) the text contradicts the facts; a retry would not cure it.
    """
    problems = contradictions(facts, text)
    if problems:
        raise WriterError(
            f"answer contradicts the facts ({'; '.join(problems)}): {text[:200]!r}",
            permanent=True,
        )
    return text


def reject_facts(result: dict, amap: np.ndarray | None, recipe: Recipe | None = None) -> Facts:
    """Facts for a stored reject: the verdict's own regions, as the result and the page show
    them, with their shape measured on the stored map (when there is one).

    Only a record without regions (from an older station) has its map measured instead.
    """
    typed = Result.from_payload(result)
    product = typed.product or (recipe.product if recipe else "battery cell")
    default = recipe.thresholds if recipe else None
    pitch = recipe.pixel_pitch_mm if recipe else None
    if amap is None or typed.regions is not None:
        return facts_from_result(typed, product, amap, default, pitch)
    thresholds = thresholds_of(typed, default)
    return facts_from_map(amap, thresholds, pitch, product, typed.image_score)


def reject_context(
    result: dict,
    image_path: Path | None,
    map_path: Path | None,
    recipe: Recipe | None = None,
) -> RejectContext:
    """Everything a writer gets about one reject; missing or unreadable files are left out.

    The map is brought to the frame's size (as the page draws it), so both line up.
    """
    frame_id = Result.from_payload(result).frame_id
    image = _read_optional(read_image, image_path, "image", frame_id)
    shape = None if image is None else image.shape[:2]
    amap = _read_optional(lambda p: read_map(p, shape), map_path, "map", frame_id)
    return RejectContext(reject_facts(result, amap, recipe), image, amap)


class ExplainWorker:
    """Works the store's explanation queue with one writer and the template as fallback.

    Args:
        store: an ``inspector.store.db.Store`` (``claim_job``, ``finish_job``, ``fail_job``).
        writer: the configured writer.
        cfg: retry and polling settings.
        recipe: the station bundle's recipe (pixel pitch, product); optional.
        publish: called as ``publish(cell_id, frame_id, text, writer_name)`` after an explanation
            is stored, e.g. to wake the outbox that publishes it.
    """

    def __init__(
        self,
        store,
        writer: ExplanationWriter,
        cfg: ExplainerConfig,
        recipe: Recipe | None = None,
        publish: Publish | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.cfg = cfg
        self.recipe = recipe
        self.publish = publish
        self.fallback = TemplateWriter()
        self.counts = {"done": 0, "fallback": 0, "retry": 0}

    def process(self, job) -> Outcome:
        """Explain one claimed job; store it (or give it back for a retry) and publish it."""
        try:
            ctx = reject_context(job.result, job.image_path, job.map_path, self.recipe)
        except Exception:  # a malformed record still gets the verdict's own facts
            log.exception("%s: could not measure the reject, using its result", job.frame_id)
            ctx = RejectContext(facts_from_result(job.result))
        writer, text = self.writer, None
        if not isinstance(writer, TemplateWriter):
            try:
                text = writer.explain(ctx)
                if self.cfg.check_facts:
                    check_answer(ctx.facts, text)
            except Exception as exc:  # any failure: retry later, finally the template
                error = f"{type(exc).__name__}: {exc}"[:500]
                retry = self.cfg.retry
                permanent = getattr(exc, "permanent", False)
                if job.attempts < retry.max_attempts and not permanent:
                    delay = retry.delay(job.attempts)
                    log.warning(
                        "%s: %s failed (attempt %d of %d), retry in %.0f s: %s",
                        job.frame_id,
                        writer.name,
                        job.attempts,
                        retry.max_attempts,
                        delay,
                        error,
                    )
                    self.store.fail_job(job.id, error, delay)
                    self.counts["retry"] += 1
                    return Outcome(job.frame_id, "retry", error=error)
                log.warning(
                    "%s: %s failed %d times, explaining from the facts: %s",
                    job.frame_id,
                    writer.name,
                    job.attempts,
                    error,
                )
                self.counts["fallback"] += 1
                writer, text = self.fallback, None
        if text is None:
            text = writer.explain(ctx)
        self.store.finish_job(job.id, text, writer.name)
        self.counts["done"] += 1
        log.info("%s explained by %s", job.frame_id, writer.name)
        if self.publish is not None:
            try:
                self.publish(job.cell_id, job.frame_id, text, writer.name)
            except Exception:  # stored already; the page shows it even if MQTT is down
                log.exception("publishing the explanation of %s failed", job.frame_id)
        return Outcome(job.frame_id, "done", writer.name, text)

    def run_once(self) -> Outcome | None:
        """Claim and process the oldest due job; None when the queue has nothing due."""
        job = self.store.claim_job()
        return None if job is None else self.process(job)

    def run(self, stop: threading.Event) -> None:
        """Process jobs until ``stop`` is set, waiting ``poll_interval_s`` when idle."""
        while not stop.is_set():
            if self.run_once() is None:
                stop.wait(self.cfg.poll_interval_s)
