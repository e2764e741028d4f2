"""The line daemon: grab -> prepare -> infer + decide -> store -> publish, in bounded stages.

Each stage is one thread; the queues between them are bounded, so a slow stage holds the one
before it back instead of eating memory. Every result is stored before it is published (the
store is the outbox). SIGTERM finishes the frames already grabbed, flushes the outbox,
publishes the offline status and returns 0.

This module wires the station together and runs it; each part is a room of its own:
``triggers`` (trigger stage), ``grab`` (grab stage), ``pairing_stage`` (hardware trigger ids),
``inference`` (prepare and infer stages), ``recording`` (store stage), ``housekeeping``
(upkeep and heartbeat), ``faults`` (faults, status, alarms), ``watch`` (reject rate, drift),
``frames`` (what passes between the stages and the result it ends as).

Example:
    >>> daemon = Daemon(load_config("station.yaml"))   # doctest: +SKIP
    >>> daemon.run()                                    # blocks until SIGTERM   # doctest: +SKIP
    0
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable

from inspector.comms.inbound import FeedbackError, parse_feedback
from inspector.comms.mqtt import MqttLink
from inspector.comms.outbox import OutboxPublisher
from inspector.config.station import Config
from inspector.core.alarms import Alarm
from inspector.runtime.predictor import Predictor
from inspector.runtime.products import ProductPool
from inspector.sources import create_source
from inspector.sources.base import Frame, Source
from inspector.sources.bit_depth import bit_depth_problem, check_bit_depth
from inspector.station.batcher import STOP
from inspector.station.datadir import DataDirError, claim
from inspector.station.drift import DriftCheck
from inspector.station.faults import FaultBoard
from inspector.station.frames import ResultMaker
from inspector.station.grab import Grabber
from inspector.station.housekeeping import Housekeeping
from inspector.station.inference import Inference
from inspector.station.metrics import Metrics
from inspector.station.pairing_stage import PairingStage
from inspector.station.passed_sampler import PassedSampler
from inspector.station.recording import Recorder
from inspector.station.systemd import sd_notify
from inspector.station.telemetry import Telemetry
from inspector.station.triggers import Triggers
from inspector.station.watch import RejectWatch, ScoreWatch
from inspector.station.watchdog import Progress, Watchdog
from inspector.store.db import Store

log = logging.getLogger("inspector.station.daemon")

FLUSH_TIMEOUT_S = 10.0
STAGES_TIMEOUT_S = 40.0  # for all stages to finish at a stop; then the outbox flush


class Daemon:
    """Runs one station until ``stop()`` (or SIGTERM/SIGINT when ``run`` installs handlers).

    Args:
        cfg: the validated configuration.
        source: a ready source (tests, demo); by default the one ``cfg.source`` describes.
        predictor: a ready ``Predictor``; by default one for ``cfg.bundle`` and ``cfg.backend``.
        on_result: called as ``on_result(row_id, payload, frame)`` after each result is stored.
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
        p = cfg.pipeline
        self.frame_q: queue.Queue = queue.Queue(p.frame_queue)
        self.ready_q: queue.Queue = queue.Queue(p.frame_queue)
        self.result_q: queue.Queue = queue.Queue(p.result_queue)
        self.trigger_q: queue.Queue = queue.Queue(p.trigger_queue)
        self._started = time.monotonic()

        # first, before the model loads: one daemon per data dir, writable, a sound database
        self.data_dir = claim(cfg.data_dir)
        try:
            self._open(cfg, source, predictor)
        except BaseException:
            self.data_dir.release()
            raise
        self._wire(cfg)
        self.watchdog = Watchdog(self.progress, cfg.health.stall_s, self._threads_alive)
        self._threads: list[threading.Thread] = []

    def _open(self, cfg: Config, source: Source | None, predictor) -> None:
        """The model, the source, the store and the MQTT link."""
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
            predictor = Predictor(cfg.bundle, backend)
        self.predictor = predictor  # the default product's (one-product station: the only one)
        self.drift = DriftCheck.from_config(predictor.recipe.score_reference, cfg.drift)
        self.telemetry = Telemetry(predictor.model_id, predictor.backend.name, self.drift)
        self.passed_sample = PassedSampler(cfg.feedback.keep_passed_every)
        self.source = source if source is not None else create_source(cfg.source)
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

    def _wire(self, cfg: Config) -> None:
        """The stages and what they share: the fault board, the watches, the queues."""
        self.faults = FaultBoard(self.link)
        self.pairing: PairingStage | None = None
        if cfg.pairing.mode == "mqtt":  # hardware trigger: ids from MQTT, paired with frames
            self.pairing = PairingStage(cfg.pairing.window_s, self.frame_q, self.faults)
        self.triggers = Triggers(
            self.source,
            self.trigger_q,
            self.frame_q,
            self.faults,
            self.counts,
            self._stop,
            self.pairing,
        )
        self.grabber = Grabber(
            cfg,
            self.source,
            self.store,
            self.frame_q,
            self.faults,
            self.progress,
            self.metrics,
            self.counts,
            self._stop,
            self.pairing,
        )
        self.inference = Inference(
            cfg.pipeline,
            self.predictor,
            self.pool,
            self.frame_q,
            self.ready_q,
            self.result_q,
            ResultMaker(cfg.station.line, cfg.station.station, self.source.name),
            self.faults,
            self.progress,
            self.metrics,
            self.telemetry,
        )
        self.housekeeping = Housekeeping(
            cfg,
            self.store,
            self.faults,
            self.metrics,
            self.progress,
            {"frames": self.frame_q, "ready": self.ready_q, "results": self.result_q},
            self.counts,
            self.telemetry,
            self.link,
            self._stop,
            self._started,
        )
        self.recorder = Recorder(
            cfg,
            self.result_q,
            self.store,
            self.source,
            self.passed_sample.take,
            self.housekeeping.room_for_pictures,
            self.outbox.offer if self.outbox is not None else None,
            RejectWatch(cfg.alarms, self.faults),
            ScoreWatch(self.drift, self.telemetry, self.predictor.model_id, self.faults),
            self.faults,
            self.progress,
            self.metrics,
            self.counts,
            self.on_result,
        )

    # --- what arrives over MQTT ----------------------------------------------------------

    def _on_trigger(self, cell_id: str, product: str | None) -> None:
        """Runs on the MQTT thread: a trigger from the PLC (never blocks)."""
        self.triggers.take(cell_id, product)

    def _on_feedback(self, payload: bytes) -> None:
        """Runs on the MQTT thread: a technician's label of a reject, from an HMI."""
        try:
            fb = parse_feedback(payload)
            self.store.add_feedback(
                fb["label"], fb["user"], "mqtt", fb["note"], cell_id=fb["cell_id"]
            )
        except (FeedbackError, KeyError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) else str(exc)
            self.faults.alarm(Alarm.BAD_FEEDBACK, "warning", f"feedback ignored: {reason}")
            return
        log.info("feedback on %s: %s by %s", fb["cell_id"], fb["label"], fb["user"])

    # --- running -------------------------------------------------------------------------

    def _threads_alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def _serve_metrics(self) -> None:
        health = self.cfg.health
        if health.metrics_port is None:
            return
        try:
            port = self.metrics.serve(health.metrics_port, health.metrics_host)
            log.info("metrics on http://%s:%d/metrics", health.metrics_host, port)
        except OSError as exc:
            log.error("metrics endpoint not started: %s", exc)

    def _alarm_bit_depth(self) -> None:
        """The camera reports another format than the bundle was made for."""
        recipe = getattr(self.predictor, "recipe", None)
        bits = self.source.bit_depth
        problem = recipe and bit_depth_problem(bits, recipe.bit_depth, self.cfg.bundle)
        if problem:
            self.faults.alarm(Alarm.BIT_DEPTH_MISMATCH, "critical", problem)

    def _alarm_damaged_store(self) -> None:
        """The database was set aside at the start (``datadir.claim``)."""
        damaged = self.data_dir.damaged
        if damaged is not None:
            self.faults.alarm(
                Alarm.STORE_DAMAGED,
                "critical",
                f"the database was damaged ({damaged.problem}); moved aside to"
                f" {damaged.moved_to}, inspecting on a fresh one; {damaged.salvaged}"
                " unpublished result(s) salvaged from it and sent",
                moved_to=str(damaged.moved_to),
                salvaged=damaged.salvaged,
            )

    def start(self) -> None:
        """Connect, start every stage, tell systemd we are ready."""
        self._serve_metrics()
        not_opened = self.grabber.open_once()  # before triggers can arrive
        opened = not_opened is None
        self._alarm_bit_depth()
        if self.link is not None:
            self.link.start()
            self.outbox.start()
        self._alarm_damaged_store()
        if not_opened:
            self.faults.raise_fault(
                "source", not_opened, Alarm.SOURCE_LOST, not_opened, source=self.source.name
            )
        for name, target in (
            ("grab", lambda: self.grabber.run(opened)),
            ("prepare", self.inference.prepare_stage),
            ("infer", self.inference.infer_stage),
            ("store", self.recorder.run),
            ("trigger", self.triggers.run),
            ("housekeeping", self.housekeeping.run),
            *([("pairing", self.pairing.run)] if self.pairing is not None else []),
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
        self.triggers.refuse_waiting()
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
        self._close()
        self.stopped.set()
        log.info("stopped")

    def _close(self) -> None:
        """Flush the outbox and say offline, then close everything the daemon opened."""
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
