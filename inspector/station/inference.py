"""The prepare and infer stages: from a grabbed frame to its verdict.

The prepare stage picks each frame's bundle (its product's, on a station with ``products``)
and preprocesses it, so the backend never waits for a resize. The infer stage takes the frames
that are ready as a batch (``pipeline.max_batch``), makes one backend call per product among
them, decides each frame and builds its result (``frames.ResultMaker``). A frame that cannot
be inspected (no image, unknown product, a backend failure) gets an ``error`` result: the line
always gets a verdict.

Example:
    >>> inference = Inference(cfg.pipeline, predictor, None, ...)      # doctest: +SKIP
    >>> threading.Thread(target=inference.prepare_stage).start()      # doctest: +SKIP
    >>> threading.Thread(target=inference.infer_stage).start()        # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import time

import numpy as np

from inspector.config.station import PipelineConfig
from inspector.core.alarms import Alarm
from inspector.runtime.products import ProductPool, UnknownProduct
from inspector.station.batcher import STOP, next_batch
from inspector.station.faults import FaultBoard
from inspector.station.frames import Grabbed, Outcome, ResultMaker
from inspector.station.metrics import Metrics
from inspector.station.telemetry import Telemetry
from inspector.station.watchdog import Progress
from models.image_io import ImageError

log = logging.getLogger("inspector.station.inference")


class Inference:
    """The prepare and the infer stage, between ``frame_q``, ``ready_q`` and ``result_q``.

    Args:
        pipeline: the ``pipeline`` section (batching, channel order).
        predictor: the default product's ``Predictor`` (a one-product station: the only one).
        pool: the products' bundles (None: a one-product station).
        frame_q, ready_q, result_q: grabbed frames in, prepared frames between the stages,
            outcomes out.
        maker: builds each frame's result.
        board: the alarms.
        progress, metrics, telemetry: what the stages report as they go.
    """

    def __init__(
        self,
        pipeline: PipelineConfig,
        predictor,
        pool: ProductPool | None,
        frame_q: queue.Queue,
        ready_q: queue.Queue,
        result_q: queue.Queue,
        maker: ResultMaker,
        board: FaultBoard,
        progress: Progress,
        metrics: Metrics,
        telemetry: Telemetry,
    ) -> None:
        self.pipeline = pipeline
        self.predictor = predictor
        self.pool = pool
        self.frame_q, self.ready_q, self.result_q = frame_q, ready_q, result_q
        self.maker = maker
        self.board = board
        self.progress = progress
        self.metrics = metrics
        self.telemetry = telemetry

    def _resolve_product(self, g: Grabbed) -> None:
        """The bundle for the frame's product; an unknown product is the frame's error."""
        product = g.frame.product
        if self.pool is None:  # one bundle: the product only labels the result
            g.predictor = self.predictor
            g.product = product or self.predictor.recipe.product
            return
        g.product = product
        try:
            g.product = self.pool.name_of(product)
            g.predictor = self.pool.get(g.product)
        except UnknownProduct as exc:
            g.error = g.frame.error or str(exc)
            g.alarmed = True
            self.board.alarm(
                Alarm.UNKNOWN_PRODUCT,
                "warning",
                f"cell {g.frame.cell_id} not inspected: {exc}",
                cell_id=g.frame.cell_id,
                product=product,
            )
        except Exception as exc:  # a bundle that cannot be loaded: no verdict for its cells
            log.exception("loading the bundle of product %s failed", g.product)
            g.error = g.frame.error or f"bundle of product {g.product} not loaded: {exc}"
            g.alarmed = True
            self.board.alarm(
                Alarm.PRODUCT_LOAD_FAILED,
                "critical",
                f"cell {g.frame.cell_id} not inspected: the bundle of product {g.product}"
                f" cannot be loaded: {type(exc).__name__}: {exc}",
                cell_id=g.frame.cell_id,
                product=g.product,
            )

    def _prepare(self, g: Grabbed) -> None:
        """The frame's model inputs, or why it has none."""
        self._resolve_product(g)
        if g.error is not None:
            return
        if g.frame.image is None or g.frame.error is not None:
            g.error = g.frame.error or "no image"
            return
        try:
            g.input = g.predictor.prepare_frame(g.frame.image, self.pipeline.channel_order)
        except ImageError as exc:
            g.error = str(exc)
        except Exception as exc:  # a frame nobody foresaw must not stop the line
            log.exception("preprocessing %s failed", g.frame.cell_id)
            g.error = f"{type(exc).__name__}: {exc}"

    def prepare_stage(self) -> None:
        """Preprocess each frame as it comes, so the backend never waits for a resize."""
        while True:
            g = self.frame_q.get()
            if g is STOP:
                break
            self.progress.busy("prepare")
            t0 = time.monotonic()
            self._prepare(g)
            g.t_prepared = time.monotonic()
            self.metrics.latency.labels("prepare").observe(g.t_prepared - t0)
            self.ready_q.put(g)
            self.progress.idle("prepare")
        self.ready_q.put(STOP)

    def infer_stage(self) -> None:
        """Score the prepared frames in batches; an outcome per frame, in order."""
        p = self.pipeline
        while True:
            batch = next_batch(self.ready_q, p.max_batch, p.batch_wait_ms / 1e3)
            if batch is None:
                break
            self.progress.busy("infer")
            self.metrics.batch_size.observe(len(batch))
            for outcome in self._infer(batch):
                self.result_q.put(outcome)
            self.metrics.queue_depth.labels("results").set(self.result_q.qsize())
            self.progress.idle("infer")
        self.result_q.put(STOP)

    def _infer(self, batch: list[Grabbed]) -> list[Outcome]:
        """One backend call per product among the batch's good frames; an outcome per frame,
        in order."""
        by_bundle: dict[int, list[Grabbed]] = {}
        for g in batch:
            if g.error is None:
                by_bundle.setdefault(id(g.predictor), []).append(g)
        done: dict[int, Outcome] = {}
        for group in by_bundle.values():
            for g, outcome in zip(group, self._infer_group(group), strict=True):
                done[id(g)] = outcome
        t0 = time.monotonic()
        return [done.get(id(g)) or self.maker.error(g, g.error, t0) for g in batch]

    def _infer_group(self, good: list[Grabbed]) -> list[Outcome]:
        """One backend call for frames of one bundle."""
        t0 = time.monotonic()
        try:
            outputs = good[0].predictor.infer([g.input for g in good])
        except Exception as exc:
            log.exception("backend failed on a batch of %d", len(good))
            self.board.alarm(Alarm.BACKEND_ERROR, "critical", f"{type(exc).__name__}: {exc}")
            return [self.maker.error(g, f"backend: {exc}", t0) for g in good]
        t1 = time.monotonic()
        self.metrics.latency.labels("infer").observe(t1 - t0)
        self.telemetry.infer_done((t1 - t0) * 1e3)
        return [
            self._decided(g, maps, scores, t0, t1)
            for g, (maps, scores) in zip(good, outputs, strict=True)
        ]

    def _decided(
        self, g: Grabbed, maps: np.ndarray, scores: np.ndarray, t0: float, t1: float
    ) -> Outcome:
        t2 = time.monotonic()
        inspection = g.predictor.decide(g.input, maps, scores)
        full = inspection.full_map() if inspection.decision.verdict == "fail" else None
        t3 = time.monotonic()
        self.metrics.latency.labels("decide").observe(t3 - t2)
        return self.maker.decided(g, inspection, full, (t0, t1, t2, t3))
