"""The line daemon: grab -> prepare -> infer + decide -> store -> publish, in bounded stages.

Each stage is one thread; the queues between them are bounded, so a slow stage holds the one
before it back instead of eating memory. Every result is stored before it is published (the
store is the outbox). SIGTERM finishes the frames already grabbed, flushes the outbox,
publishes the offline status and returns 0.

Example:
    >>> daemon = Daemon(load_config("station.yaml"))   # doctest: +SKIP
    >>> daemon.run()                                    # blocks until SIGTERM   # doctest: +SKIP
    0
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING

import numpy as np

from inspector.comms.mqtt import RESULT_SCHEMA, MqttLink, OutboxPublisher
from inspector.config.station import Config
from inspector.offline.feedback import FeedbackError, PassedSampler, parse_feedback
from inspector.runtime.products import ProductPool, UnknownProduct
from inspector.sources.base import Frame, Source, SourceError, new_cell_id, safe_text
from inspector.sources.bit_depth import bit_depth_problem, check_bit_depth
from inspector.station.batcher import STOP, next_batch
from inspector.station.datadir import DataDirError, claim
from inspector.station.drift import DriftCheck, describe
from inspector.station.metrics import Metrics
from inspector.station.pairing import Pairer, PairOutcome
from inspector.station.systemd import sd_notify
from inspector.station.telemetry import Telemetry
from inspector.station.watchdog import Progress, Watchdog
from inspector.store.db import Store
from inspector.vision.decision import published_thresholds
from models.preprocess import as_bgr_order

if TYPE_CHECKING:
    from inspector.runtime.predictor import Prepared

log = logging.getLogger("inspector.station.daemon")

_OVERFLOW = object()  # wakes the trigger stage to answer overflowed triggers

MAX_BACKOFF_S = 30.0
FLUSH_TIMEOUT_S = 10.0
STAGES_TIMEOUT_S = 40.0  # for all stages to finish at a stop; then the outbox flush


@dataclass
class Grabbed:
    """A frame with the monotonic time it left the source."""

    frame: Frame
    t_grab: float
    input: Prepared | None = None  # the model inputs (ROI tiles), once prepared
    error: str | None = None  # why it cannot be inspected
    t_prepared: float = 0.0
    predictor: object | None = None  # the bundle of the frame's product, once resolved
    product: str | None = None  # the product as configured (or as the trigger named it)
    alarmed: bool = False  # its error already raised its own alarm (not `frame_error`)


@dataclass
class Outcome:
    """A decided frame on its way to the store."""

    payload: dict
    frame: Frame
    amap: np.ndarray | None
    t_grab: float
    alarmed: bool = False


def _iso(ts) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain_meta(meta: dict) -> dict:
    """The source's plain facts about a frame; its ``source`` name is the payload's ``kind``.
    Text from outside (a file name) comes without control characters, quotes or angle
    brackets."""
    return {
        k: safe_text(v) if isinstance(v, str) else v
        for k, v in meta.items()
        if k != "source" and isinstance(v, str | int | float | bool)
    }


def create_configured_source(cfg: Config) -> Source:
    """The source the config names (via ``inspector.sources.create_source``)."""
    from inspector.sources import create_source

    return create_source(cfg.source, cfg.data_dir)


class Daemon:
    """Runs one station until ``stop()`` (or SIGTERM/SIGINT when ``run`` installs handlers).

    Args:
        cfg: the validated configuration.
        source: a ready source (tests, demo); by default the one ``cfg.source`` describes.
        predictor: a ready ``Predictor``; by default one for ``cfg.bundle`` and ``cfg.backend``.
        on_result: called as ``on_result(row_id, payload)`` after each result is stored.
        on_delivered: called as ``on_delivered(row_id, monotonic_time)`` on each PUBACK.
    """

    def __init__(
        self,
        cfg: Config,
        source: Source | None = None,
        predictor=None,
        on_result: Callable[[int, dict, Frame], None] | None = None,
        on_delivered: Callable[[int, float], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_result = on_result
        self._on_delivered = on_delivered
        self._stop = threading.Event()
        self.stopped = threading.Event()
        self.ready = threading.Event()
        self.progress = Progress()
        self.metrics = Metrics()
        self.counts = {"frames": 0, "pass": 0, "fail": 0, "error": 0, "triggers": 0}
        self._faults: dict[str, str] = {}
        self._fault_lock = threading.Lock()
        p = cfg.pipeline
        self.frame_q: queue.Queue = queue.Queue(p.frame_queue)
        self.ready_q: queue.Queue = queue.Queue(p.frame_queue)
        self.result_q: queue.Queue = queue.Queue(p.result_queue)
        self.trigger_q: queue.Queue = queue.Queue(p.trigger_queue)
        # triggers that found trigger_q full: tiny items, answered with an error result by the
        # trigger stage (the MQTT thread must never block, or the broker drops messages)
        self._overflow: collections.deque[tuple[str, str | None]] = collections.deque()
        self._started = time.monotonic()
        self._recent: collections.deque[bool] = collections.deque(
            maxlen=cfg.alarms.reject_window
        )  # latest inspected cells, True for a reject (alarms.reject: rate)
        self._rate_high = False
        # hardware trigger: ids from MQTT, paired with frames by the pairing stage
        self.pairer: Pairer[Grabbed] | None = None
        if cfg.pairing.mode == "mqtt":
            self.pairer = Pairer(cfg.pairing.window_s)
        self._pair_wake = threading.Condition()
        self._frames_done = False

        # first, before the model loads: one daemon per data dir, writable, a sound database
        self.data_dir = claim(cfg.data_dir)
        try:
            self._open(cfg, source, predictor)
        except BaseException:
            self.data_dir.release()
            raise
        self.watchdog = Watchdog(self.progress, cfg.health.stall_s, self._threads_alive)
        self._threads: list[threading.Thread] = []

    def _open(self, cfg: Config, source: Source | None, predictor) -> None:
        # inspector-engine.service may pick the backend for this box (engine.env)
        backend = os.environ.get("INSPECTOR_BACKEND") or cfg.backend
        if backend == "auto":  # the engine check has not chosen: the recipe's
            backend = None
        self.pool: ProductPool | None = None
        if cfg.products is not None:  # several products: each frame's product picks a bundle
            products = cfg.products
            self.pool = ProductPool(
                products.bundles, backend, products.default_product(), products.memory_budget_mb
            )
            if products.preload:
                self.pool.preload()
            if predictor is None:
                predictor = self.pool.get(self.pool.default or next(iter(products.bundles)))
        elif predictor is None:
            from inspector.runtime.predictor import Predictor

            predictor = Predictor(cfg.bundle, backend)
        self.predictor = predictor  # the default product's (one-product station: the only one)
        self.drift = DriftCheck.from_config(predictor.recipe.score_reference, cfg.drift)
        self.telemetry = Telemetry(predictor.model_id, predictor.backend.name, self.drift)
        self.passed_sample = PassedSampler(cfg.feedback.keep_passed_every)
        self.source = source if source is not None else create_configured_source(cfg)
        recipe = getattr(predictor, "recipe", None)
        if recipe is not None:  # refuse to inspect frames the recipe would mis-scale
            check_bit_depth(self.source.bit_depth, recipe.bit_depth, cfg.bundle)
        try:
            self.store = Store(cfg.data_dir, autocheckpoint=False)  # housekeeping checkpoints
            self.store.recover_unsaved()  # rejects whose pictures a crash cut short
            damaged = self.data_dir.damaged
            if damaged is not None:  # the outbox it held is sent from the fresh store
                damaged.salvaged = self.store.salvage_unpublished(damaged.moved_to)
        except sqlite3.Error as exc:
            raise DataDirError(f"database in {cfg.data_dir} cannot be used: {exc}") from None
        self.link: MqttLink | None = None
        self.outbox: OutboxPublisher | None = None
        if cfg.mqtt.enabled:
            self.link = MqttLink(
                cfg.mqtt,
                cfg.station.line,
                cfg.station.station,
                role="daemon",
                on_trigger=self._on_trigger,
                on_feedback=self._on_feedback,
            )
            self.outbox = OutboxPublisher(
                self.store, self.link, cfg.mqtt.inflight_window, on_delivered=self._on_delivered
            )

    # --- faults, alarms and status -------------------------------------------------------

    def alarm(self, kind: str, severity: str, message: str, **extra: object) -> None:
        """Log an alarm and publish it (when MQTT is enabled)."""
        level = logging.ERROR if severity == "critical" else logging.WARNING
        log.log(level, "alarm %s: %s", kind, message, extra={"alarm": kind, **extra})
        if self.link is not None:
            self.link.alarm(kind, severity, message, **extra)

    def _set_fault(self, name: str, detail: str | None) -> bool:
        """Set (``detail``) or clear (None) a fault; the status follows. True when the fault
        appeared or went away, so the caller alarms once, not at every check."""
        with self._fault_lock:
            before = self._faults.get(name)
            if detail is None:
                self._faults.pop(name, None)
            else:
                self._faults[name] = detail
            if before == detail:
                return False
            faults = dict(self._faults)
        state = "degraded" if faults else "online"
        text = "; ".join(f"{k}: {v}" for k, v in sorted(faults.items()))
        if self.link is not None:
            self.link.set_status(state, text)
        sd_notify(f"STATUS={state}{': ' + text if text else ''}")
        return (before is None) != (detail is None)

    def _raise_fault(self, name: str, detail: str, kind: str, message: str, **extra) -> None:
        """Set fault ``name``; the critical alarm ``kind`` goes out when the fault is new."""
        if self._set_fault(name, detail):
            self.alarm(kind, "critical", message, **extra)

    # --- stages --------------------------------------------------------------------------

    def _on_trigger(self, cell_id: str, product: str | None) -> None:
        """Runs on the MQTT thread: hand the trigger on without ever blocking."""
        if self._stop.is_set():
            self._refuse_trigger(cell_id)
            return
        if self.pairer is not None:  # an id for a hardware-triggered frame, not a grab
            self.counts["triggers"] += 1
            with self._pair_wake:
                self.pairer.add_id(cell_id, product, time.monotonic())
                self._pair_wake.notify()
            return
        try:
            self.trigger_q.put_nowait((cell_id, product))
        except queue.Full:  # still give the cell a verdict: error, with the reason
            self._overflow.append((cell_id, product))
            self.alarm(
                "trigger_overflow",
                "critical",
                f"trigger {cell_id} not executed: {self.trigger_q.maxsize} triggers already wait",
                cell_id=cell_id,
            )
            # wake the trigger stage should it sit in get() (the queue emptied meanwhile)
            with contextlib.suppress(queue.Full):
                self.trigger_q.put_nowait(_OVERFLOW)

    def _on_feedback(self, payload: bytes) -> None:
        """Runs on the MQTT thread: a technician's label of a reject, from an HMI."""
        try:
            fb = parse_feedback(payload)
            self.store.add_feedback(
                fb["label"], fb["user"], "mqtt", fb["note"], cell_id=fb["cell_id"]
            )
        except (FeedbackError, KeyError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) else str(exc)
            self.alarm("bad_feedback", "warning", f"feedback ignored: {reason}")
            return
        log.info("feedback on %s: %s by %s", fb["cell_id"], fb["label"], fb["user"])

    def _refuse_trigger(self, cell_id: str) -> None:
        self.alarm(
            "trigger_refused", "warning", f"trigger {cell_id} refused: stopping", cell_id=cell_id
        )

    def _answer_overflow(self) -> None:
        """An error result for each trigger that found the queue full (blocking put: this is
        the trigger stage's own thread, and the frames queue drains)."""
        while self._overflow:
            cell_id, product = self._overflow.popleft()
            frame = Frame(cell_id, None, product=product, error="trigger queue full")
            self.frame_q.put(Grabbed(frame, time.monotonic()))

    def _trigger_stage(self) -> None:
        while True:
            self._answer_overflow()
            item = self.trigger_q.get()
            if item is _OVERFLOW:
                continue
            if item is STOP:
                self._answer_overflow()
                return
            cell_id, product = item
            self.counts["triggers"] += 1
            if not self.source.triggerable:
                self.alarm(
                    "trigger_unsupported",
                    "warning",
                    f"trigger for {cell_id} ignored: the {self.source.name} source takes none",
                    cell_id=cell_id,
                )
                continue
            try:
                self.source.trigger(cell_id, product)
            except Exception as exc:  # the frame is lost: say so with an error verdict
                self.alarm("trigger_failed", "critical", f"{cell_id}: {exc}", cell_id=cell_id)
                frame = Frame(cell_id, None, product=product, error=f"trigger failed: {exc}")
                self.frame_q.put(Grabbed(frame, time.monotonic()))

    def _open_source_once(self) -> str | None:
        """Open the source; the reason when it cannot be opened."""
        try:
            self.source.open()
            return None
        except Exception as exc:
            reason = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
            log.error("source not opened: %s", reason)
            return reason

    def _grab_stage(self, opened: bool) -> None:
        first = getattr(self.cfg.source, "reconnect_backoff_s", 1.0)
        longest = getattr(self.cfg.source, "reconnect_backoff_max_s", MAX_BACKOFF_S)
        backoff = first
        # a source that beats while it waits is "busy" between frames: stuck inside one file,
        # it stops beating and the stall check (watchdog, status) sees the grab stage hang
        beats = self.source.watch_liveness(lambda: self.progress.busy("grab"))
        while not self._stop.is_set():
            try:
                if not opened:
                    self.source.open()
                    opened = True
                    if self._set_fault("source", None):
                        self.alarm("source_restored", "info", f"{self.source.name} source is back")
                if beats:
                    self.progress.busy("grab")
                for frame in self.source.frames():
                    self.progress.idle("grab")  # a full frame queue is the next stage's wait
                    backoff = first  # it delivers: the next loss starts the back-off anew
                    self._take(frame)
                    if beats:
                        self.progress.busy("grab")
                self.progress.idle("grab")
                if self._stop.is_set():
                    break
                raise SourceError(f"{self.source.name} source stopped delivering frames")
            except Exception as exc:  # SourceError, or a bug in a source: alarm, back off, reopen
                self.progress.idle("grab")
                opened = False
                self.metrics.source_errors.inc()
                reason = (
                    str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
                )
                if not isinstance(exc, SourceError):
                    log.exception("source failed")
                self._raise_fault("source", reason, "source_lost", reason, source=self.source.name)
                try:
                    self.source.close()
                except Exception:
                    log.exception("closing the failed source")
                log.info("reopening the source in %.1f s", backoff)
                if self._stop.wait(backoff):
                    break
                backoff = min(longest, backoff * 2)
        if self.pairer is None:
            self.frame_q.put(STOP)
        else:  # the pairing stage decides what still waits, then ends the frames
            with self._pair_wake:
                self._frames_done = True
                self._pair_wake.notify()

    def _take(self, frame: Frame) -> None:
        t = time.monotonic()
        self.metrics.frames.inc()
        self.counts["frames"] += 1
        if not frame.cell_id:
            frame.cell_id = new_cell_id()
        if self._already_stored(frame):
            return
        if self.pairer is None:
            self.frame_q.put(Grabbed(frame, t))
            return
        with self._pair_wake:
            self.pairer.add_frame(Grabbed(frame, t), t)
            self._pair_wake.notify()

    # --- pairing (pairing.mode: mqtt) ----------------------------------------------------

    def _pairing_stage(self) -> None:
        """Decide frames and ids as their windows close; each decision goes on as a frame."""
        while True:
            with self._pair_wake:
                if self._frames_done:
                    decisions, done = self.pairer.drain(), True
                else:
                    deadline = self.pairer.next_deadline()
                    now = time.monotonic()
                    if deadline is None or deadline > now:
                        wait = None if deadline is None else deadline - now
                        self._pair_wake.wait(wait)
                        continue
                    decisions, done = self.pairer.due(now), False
                    if not decisions:  # not expected (see next_deadline): never spin on it
                        self._pair_wake.wait(0.01)
            for d in decisions:
                self.frame_q.put(self._paired(d))
            if done:
                self.frame_q.put(STOP)
                return

    def _paired(self, d: PairOutcome[Grabbed]) -> Grabbed:
        """A pairing decision as the frame it becomes, alarmed when it is not a clean pair."""
        if d.frame is None:  # an id without a frame: its cell gets an error result
            why = f"no frame within pairing.window_s ({self.cfg.pairing.window_s:g} s) of the id"
            if d.flag == "ambiguous":
                why = "its frame cannot be told apart: two ids or two frames in one window"
            frame = Frame(d.cell_id, None, product=d.product, error=why, meta={"pairing": d.flag})
            if d.flag == "no_frame":
                self.alarm(
                    "frame_missing", "warning", f"cell {d.cell_id}: {why}", cell_id=d.cell_id
                )
            else:
                self.alarm(
                    "cell_id_ambiguous", "warning", f"cell {d.cell_id}: {why}", cell_id=d.cell_id
                )
            return Grabbed(frame, time.monotonic(), alarmed=True)
        g = d.frame
        g.frame.meta["pairing"] = d.flag
        if d.flag == "paired":
            g.frame.cell_id = d.cell_id
            g.frame.product = d.product or g.frame.product
            g.frame.meta["pairing_offset_ms"] = d.offset_ms
            return g
        g.frame.meta["cell_id_generated"] = True
        cell = g.frame.cell_id
        if d.flag == "no_cell_id":
            window = f"{self.cfg.pairing.window_s:g} s"
            self.alarm(
                "cell_id_missing",
                "warning",
                f"frame inspected as {cell}: no cell id within pairing.window_s ({window})",
                cell_id=cell,
            )
        else:
            self.alarm(
                "cell_id_ambiguous",
                "warning",
                f"frame inspected as {cell}: two ids or two frames in one window, none taken",
                cell_id=cell,
            )
        return g

    def _already_stored(self, frame: Frame) -> bool:
        """A file handed out again after a crash between storing its result and filing it away
        (same path, same content, never filed away): file it now instead of inspecting it a
        second time under a new frame_id. A file filed away before and queued again on
        purpose (``mv done/X.png .``) is inspected anew; the log says which it was."""
        path, digest = frame.meta.get("path"), frame.meta.get("sha256")
        if not path or not digest:
            return False
        try:
            stored = self.store.result_for_file(str(path), digest)
        except Exception:  # the store stage raises the store fault for this frame
            log.exception("looking up an earlier result of %s failed", path)
            return False
        if stored is None:
            return False
        row_id, payload, filed = stored
        if filed:
            log.info(
                "%s has the content of result %s, filed away before: queued again, inspected anew",
                path,
                payload["frame_id"],
            )
            return False
        log.warning(
            "%s already has result %s (stored before a restart, never filed away):"
            " filed away now, not inspected again",
            path,
            payload["frame_id"],
        )
        self._ack(frame, payload["verdict"] != "error", row_id)
        return True

    def _ack(self, frame: Frame, ok: bool, row_id: int | None) -> None:
        """Tell the source its frame is done; note in the store when its file is filed away."""
        try:
            filed = self.source.ack(frame, ok)
        except Exception:
            log.exception("source ack of %s failed", frame.cell_id)
            return
        if filed and row_id is not None:
            try:
                self.store.mark_filed(row_id)
            except Exception:
                log.exception("could not note that the file of result %s is filed away", row_id)

    def _base_payload(self, g: Grabbed) -> dict:
        f = g.frame
        return {
            "schema": RESULT_SCHEMA,
            "line": self.cfg.station.line,
            "station": self.cfg.station.station,
            "cell_id": f.cell_id,
            "frame_id": new_cell_id(self.cfg.station.station, f.timestamp),  # the time of ts
            "ts": _iso(f.timestamp),
            "product": g.product,
            "model_id": g.predictor.model_id if g.predictor is not None else None,
            "backend": g.predictor.backend.name if g.predictor is not None else None,
            "source": {"kind": self.source.name, **_plain_meta(f.meta)},
        }

    def _error_outcome(self, g: Grabbed, reason: str, t0: float) -> Outcome:
        payload = self._base_payload(g) | {
            "verdict": "error",
            "error": reason,
            "image_score": None,
            "defect_area_px": None,
            "regions": [],
            "thresholds": (
                published_thresholds(g.predictor.recipe.thresholds)
                if g.predictor is not None
                else None
            ),
            "latency_ms": {"wait": round((t0 - g.t_grab) * 1e3, 2)},
        }
        return Outcome(payload, g.frame, None, g.t_grab, g.alarmed)

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
            self.alarm(
                "unknown_product",
                "warning",
                f"cell {g.frame.cell_id} not inspected: {exc}",
                cell_id=g.frame.cell_id,
                product=product,
            )
        except Exception as exc:  # a bundle that cannot be loaded: no verdict for its cells
            log.exception("loading the bundle of product %s failed", g.product)
            g.error = g.frame.error or f"bundle of product {g.product} not loaded: {exc}"
            g.alarmed = True
            self.alarm(
                "product_load_failed",
                "critical",
                f"cell {g.frame.cell_id} not inspected: the bundle of product {g.product}"
                f" cannot be loaded: {type(exc).__name__}: {exc}",
                cell_id=g.frame.cell_id,
                product=g.product,
            )

    def _prepare_stage(self) -> None:
        """Preprocess each frame as it comes, so the backend never waits for a resize."""
        from models.image_io import ImageError

        while True:
            g = self.frame_q.get()
            if g is STOP:
                break
            self.progress.busy("prepare")
            t0 = time.monotonic()
            self._resolve_product(g)
            if g.error is not None:
                pass
            elif g.frame.image is None or g.frame.error is not None:
                g.error = g.frame.error or "no image"
            else:
                try:
                    order = self.cfg.pipeline.channel_order
                    g.input = g.predictor.prepare_frame(g.frame.image, order)
                except ImageError as exc:
                    g.error = str(exc)
                except Exception as exc:  # a frame nobody foresaw must not stop the line
                    log.exception("preprocessing %s failed", g.frame.cell_id)
                    g.error = f"{type(exc).__name__}: {exc}"
            g.t_prepared = time.monotonic()
            self.metrics.latency.labels("prepare").observe(g.t_prepared - t0)
            self.ready_q.put(g)
            self.progress.idle("prepare")
        self.ready_q.put(STOP)

    def _infer_stage(self) -> None:
        p = self.cfg.pipeline
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
        return [done.get(id(g)) or self._error_outcome(g, g.error, t0) for g in batch]

    def _infer_group(self, good: list[Grabbed]) -> list[Outcome]:
        """One backend call for frames of one bundle."""
        t0 = time.monotonic()
        try:
            outputs = good[0].predictor.infer([g.input for g in good])
        except Exception as exc:
            log.exception("backend failed on a batch of %d", len(good))
            self.alarm("backend_error", "critical", f"{type(exc).__name__}: {exc}")
            return [self._error_outcome(g, f"backend: {exc}", t0) for g in good]
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
        decision, shape = inspection.decision, inspection.frame_shape
        full = inspection.full_map() if decision.verdict == "fail" else None
        t3 = time.monotonic()
        self.metrics.latency.labels("decide").observe(t3 - t2)
        payload = self._base_payload(g) | {
            "width": int(shape[1]),
            "height": int(shape[0]),
            **decision.to_dict(),
            "latency_ms": {
                "prepare": round((g.t_prepared - g.t_grab) * 1e3, 2),
                "wait": round((t0 - g.t_prepared) * 1e3, 2),
                "infer": round((t1 - t0) * 1e3, 2),
                "decide": round((t3 - t2) * 1e3, 2),
            },
        }
        return Outcome(payload, g.frame, full, g.t_grab)

    def _store_stage(self) -> None:
        while True:
            item = self.result_q.get()
            if item is STOP:
                return
            self.progress.busy("store")
            row_id = None
            try:
                row_id = self._store_one(item)
                ok = item.payload["verdict"] != "error"
            except Exception as exc:  # disk full, damaged database: degraded, keep inspecting
                log.exception("could not store %s", item.payload.get("frame_id"))
                detail = f"{type(exc).__name__}: {exc}"
                self._raise_fault(
                    "store", detail, "store_failed", f"results are not being stored: {detail}"
                )
                ok = False
            else:
                if self._set_fault("store", None):
                    self.alarm("store_restored", "info", "results are stored again")
            self._ack(item.frame, ok, row_id)
            self.progress.idle("store")

    def _store_one(self, o: Outcome) -> int:
        payload = o.payload
        t0 = time.monotonic()
        payload["latency_ms"]["total"] = round((t0 - o.t_grab) * 1e3, 2)
        keep = payload["verdict"] == "pass" and self.passed_sample.take()
        image, amap = (o.frame.image, o.amap) if payload["verdict"] == "fail" else (None, None)
        if keep:  # the sample of passed frames kept for feedback datasets
            image = o.frame.image
        if image is not None and not self._room_for_pictures():
            image = amap = None  # the verdict still goes out; only the pictures are not kept
        if image is not None:  # pictures are stored BGR, as the pages and the chat read them
            image = as_bgr_order(image, self.cfg.pipeline.channel_order)
        meta = o.frame.meta
        source_file = (str(meta["path"]), meta["sha256"]) if meta.get("sha256") else None
        row_id = self.store.record(
            payload, image, amap, defer_files=True, source_file=source_file, keep_image=keep
        )
        self._watch_scores(payload)
        self.metrics.latency.labels("store").observe(time.monotonic() - t0)
        if self.outbox is not None:
            self.outbox.offer(row_id, payload)
        verdict = payload["verdict"]
        self.counts[verdict] += 1
        self.metrics.verdicts.labels(verdict).inc()
        if verdict != "error":
            self._reject_alarm(payload)
        elif o.alarmed:  # unknown product, id without frame: alarmed with its own kind
            pass
        else:
            self.alarm(
                "frame_error",
                "warning",
                f"cell {payload['cell_id']} not inspected: {payload['error']}",
                cell_id=payload["cell_id"],
                frame_id=payload["frame_id"],
            )
        if self.on_result is not None:
            self.on_result(row_id, payload, o.frame)
        return row_id

    def _watch_scores(self, payload: dict) -> None:
        """Feed a scored cell to the heartbeat's telemetry and the drift check."""
        score = payload.get("image_score")
        if score is None:
            return
        self.telemetry.scored(score)
        # the drift reference is the default product's calibration; other products' scores
        # would read as drift
        own = payload.get("model_id") == self.predictor.model_id
        change = self.drift.observe(score) if self.drift is not None and own else None
        if change == "raised":
            self._set_fault("drift", f"PSI {self.drift.last_psi:.3f}")
            self.alarm(
                "score_drift", "warning", describe(self.drift), psi=round(self.drift.last_psi, 4)
            )
        elif change == "cleared":
            self._set_fault("drift", None)
            self.alarm(
                "score_drift_cleared",
                "info",
                describe(self.drift),
                psi=round(self.drift.last_psi, 4),
            )

    def _reject_alarm(self, payload: dict) -> None:
        """The reject alarms ``alarms.reject`` asks for: none, each, or on the reject rate."""
        policy = self.cfg.alarms
        failed = payload["verdict"] == "fail"
        if policy.reject == "every" and failed:
            where = ", ".join(r["position"] for r in payload["regions"])
            self.alarm(
                "reject",
                "warning",
                f"cell {payload['cell_id']} rejected: {len(payload['regions'])} region(s), {where}",
                cell_id=payload["cell_id"],
                frame_id=payload["frame_id"],
                image_score=payload["image_score"],
            )
        if policy.reject != "rate":
            return
        self._recent.append(failed)
        if len(self._recent) < policy.reject_window:
            return
        rate = sum(self._recent) / len(self._recent)
        text = f"{rate:.1%} of the last {len(self._recent)} cells rejected"
        if rate >= policy.reject_rate and not self._rate_high:
            self._rate_high = True
            self.alarm(
                "reject_rate",
                "warning",
                f"{text} (alarms.reject_rate {policy.reject_rate:.1%})",
                rate=round(rate, 4),
                window=len(self._recent),
            )
        elif rate < policy.reject_rate and self._rate_high:
            self._rate_high = False
            self.alarm(
                "reject_rate_restored",
                "info",
                f"{text}: back below alarms.reject_rate",
                rate=round(rate, 4),
                window=len(self._recent),
            )

    def _room_for_pictures(self) -> bool:
        """False (and the disk fault) when the data directory is below the free-space floor."""
        free_gb = self.store.free_bytes() / 1e9
        if free_gb >= self.cfg.retention.disk_low_alarm_gb:
            self._set_fault("disk", None)
            return True
        detail = f"{free_gb:.2f} GB free"
        self._raise_fault("disk", detail, "disk_low", f"{detail}: reject pictures not saved")
        return False

    def _housekeeping(self) -> None:
        """Every heartbeat: store upkeep (checkpoint, backlog, retention, disk), then the
        heartbeat. Upkeep that fails raises the ``housekeeping`` fault (status degraded, one
        alarm) and the heartbeat still goes out."""
        hb = self.cfg.mqtt.heartbeat_s
        next_retention = [time.monotonic()]
        last = dict(self.counts)
        last_t = time.monotonic()
        while not self._stop.wait(hb):
            now = time.monotonic()
            backlog = None
            try:
                backlog = self._upkeep(now, next_retention)
            except Exception as exc:
                log.exception("housekeeping failed")
                reason = f"{type(exc).__name__}: {exc}"[:300]
                self._raise_fault(
                    "housekeeping",
                    reason,
                    "housekeeping_failed",
                    f"store upkeep failed, results are at risk: {reason}",
                )
            else:
                if self._set_fault("housekeeping", None):
                    self.alarm("housekeeping_restored", "info", "store upkeep works again")
            try:
                self._check_stalls()  # not store upkeep: also while that fails
                if self.link is not None:
                    dt = max(1e-6, now - last_t)
                    self.link.heartbeat(
                        {
                            **self.counts,
                            "frames_per_s": round((self.counts["frames"] - last["frames"]) / dt, 2),
                            "backlog": backlog,
                            "uptime_s": round(now - self._started, 1),
                            "status": self.link.status,
                            **self.telemetry.snapshot(),
                        }
                    )
                last, last_t = dict(self.counts), now
            except Exception:
                log.exception("heartbeat failed")

    def _upkeep(self, now: float, next_retention: list[float]) -> int:
        """Checkpoint the WAL, update the gauges and the backlog fault, apply retention when
        due, check the disk; returns the backlog."""
        ret = self.cfg.retention
        self.store.checkpoint()
        backlog = self.store.backlog()
        self.metrics.backlog.set(backlog)
        self.metrics.pending_jobs.set(self.store.pending_jobs())
        self.metrics.queue_depth.labels("frames").set(self.frame_q.qsize())
        self.metrics.queue_depth.labels("ready").set(self.ready_q.qsize())
        self.metrics.queue_depth.labels("results").set(self.result_q.qsize())
        unpublished = f"{backlog} results unpublished"
        over = backlog > self.cfg.mqtt.backlog_alarm
        if self._set_fault("backlog", unpublished if over else None) and over:
            self.alarm("broker_backlog", "warning", unpublished)
        if now >= next_retention[0]:
            next_retention[0] = now + ret.check_every_s
            self.store.apply_retention(ret.max_age_days * 86400, int(ret.max_disk_gb * 1e9))
        self._room_for_pictures()  # every heartbeat: the disk fault also clears
        return backlog

    def _check_stalls(self) -> None:
        """Degrade the status while a stage hangs inside one item (the watchdog also stops)."""
        stalled = self.progress.stalled(self.cfg.health.stall_s)
        if not stalled:
            self._set_fault("stalled", None)
            return
        detail = f"{', '.join(sorted(stalled))} stage stuck for over {self.cfg.health.stall_s:g} s"
        self._raise_fault("stalled", detail, "pipeline_stalled", detail)

    # --- running -------------------------------------------------------------------------

    def _threads_alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def start(self) -> None:
        """Connect, start every stage, tell systemd we are ready."""
        if self.cfg.health.metrics_port is not None:
            try:
                port = self.metrics.serve(
                    self.cfg.health.metrics_port, self.cfg.health.metrics_host
                )
                log.info("metrics on http://%s:%d/metrics", self.cfg.health.metrics_host, port)
            except OSError as exc:
                log.error("metrics endpoint not started: %s", exc)
        not_opened = self._open_source_once()  # before triggers can arrive
        opened = not_opened is None
        recipe = getattr(self.predictor, "recipe", None)
        bits = self.source.bit_depth
        problem = recipe and bit_depth_problem(bits, recipe.bit_depth, self.cfg.bundle)
        if problem:  # the camera reports another format than configured
            self.alarm("bit_depth_mismatch", "critical", problem)
        if self.link is not None:
            self.link.start()
            self.outbox.start()
        damaged = self.data_dir.damaged
        if damaged is not None:
            self.alarm(
                "store_damaged",
                "critical",
                f"the database was damaged ({damaged.problem}); moved aside to"
                f" {damaged.moved_to}, inspecting on a fresh one; {damaged.salvaged}"
                " unpublished result(s) salvaged from it and sent",
                moved_to=str(damaged.moved_to),
                salvaged=damaged.salvaged,
            )
        if not_opened:
            self._raise_fault(
                "source", not_opened, "source_lost", not_opened, source=self.source.name
            )
        for name, target in (
            ("grab", lambda: self._grab_stage(opened)),
            ("prepare", self._prepare_stage),
            ("infer", self._infer_stage),
            ("store", self._store_stage),
            ("trigger", self._trigger_stage),
            ("housekeeping", self._housekeeping),
            *([("pairing", self._pairing_stage)] if self.pairer is not None else []),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self.watchdog.start()
        sd_notify("READY=1", "STATUS=online")
        self.ready.set()
        log.info(
            "inspecting on %s/%s with %s",
            self.cfg.station.line,
            self.cfg.station.station,
            self.predictor.model_id
            if self.pool is None
            else f"products {', '.join(self.pool.bundles)}, loaded {self.pool.loaded()}",
        )

    def _on_sighup(self) -> None:
        log.warning(
            "SIGHUP ignored: the station keeps inspecting; restart the service "
            "(systemctl restart inspector) to read the configuration again"
        )

    def stop(self) -> None:
        """Ask the daemon to finish (safe from a signal handler or another thread)."""
        self._stop.set()

    def wait_stopped(self) -> None:
        """Finish the frames in flight, flush the outbox, publish offline, close."""
        sd_notify("STOPPING=1", "STATUS=stopping")
        # all stages together, so that the stop fits systemd's TimeoutStopSec (60 s)
        deadline = time.monotonic() + STAGES_TIMEOUT_S
        by_name = {t.name: t for t in self._threads}
        self.trigger_q.put(STOP)  # triggers taken so far reach the source before it closes
        by_name["trigger"].join(max(0.0, deadline - time.monotonic()))
        while not self.trigger_q.empty():  # queued behind STOP as it was put
            item = self.trigger_q.get_nowait()
            if item is not STOP and item is not _OVERFLOW:
                self._refuse_trigger(item[0])
        while self._overflow:
            self._refuse_trigger(self._overflow.popleft()[0])
        try:
            self.source.close()
        except Exception:
            log.exception("closing the source")
        for name in ("grab", "pairing", "prepare", "infer", "store"):
            if name not in by_name:
                continue
            by_name[name].join(max(0.0, deadline - time.monotonic()))
            if by_name[name].is_alive():
                log.error("the %s stage did not finish in time; stopping without it", name)
        by_name["housekeeping"].join(1.0)
        if self.link is not None:
            try:
                if self.link.connected.is_set() and not self.outbox.flush(FLUSH_TIMEOUT_S):
                    log.warning(
                        "%d result(s) stay in the outbox for the next start", self.store.backlog()
                    )
            except Exception:  # a damaged database: say so, still stop cleanly
                log.exception("flushing the outbox")
            self.outbox.stop()
            self.link.stop("offline")
        self.watchdog.stop()
        self.metrics.close()
        try:
            self.store.close()
        except Exception:
            log.exception("closing the store")
        try:
            if self.pool is not None:  # the default product's predictor is one of them
                self.pool.close()
            else:
                self.predictor.close()
        except Exception:
            log.exception("closing the backend")
        self.data_dir.release()
        self.stopped.set()
        log.info("stopped")

    def run(self, install_signals: bool = True) -> int:
        """Start, wait for SIGTERM/SIGINT (or ``stop()``), shut down cleanly; returns 0.
        SIGHUP is logged and ignored."""
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
            # SIGHUP's default action would end the process without a word; nothing here
            # can be reloaded in place, so say so and keep inspecting
            signal.signal(signal.SIGHUP, lambda *_: self._on_sighup())
        self.start()
        while not self._stop.wait(1.0):
            pass
        self.wait_stopped()
        return 0
