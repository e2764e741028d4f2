"""``inspector explain``: the explainer worker, as systemd starts it."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from inspector.cli.app import app
from inspector.cli.errors import user_errors
from inspector.core.logs import setup_logging
from inspector.station.systemd import sd_notify
from inspector.store.db import Store
from models.recipe import Recipe, load_recipe

if TYPE_CHECKING:  # the explainer's stack is imported when the command runs
    from inspector.comms.mqtt import MqttLink
    from inspector.comms.outbox import OutboxPublisher
    from inspector.config.station import Config

log = logging.getLogger("inspector.explain")


def _load_writer(cfg):
    """The configured writer; a model that fails to load (GPU memory, a torch error) leaves
    the template in charge, so rejects are still explained, with an error in the log."""
    from inspector.explain.writers import TemplateWriter, create_writer  # not at --help

    try:
        return create_writer(cfg.explainer, cfg.bundle)
    except ImportError as exc:
        raise ValueError(
            f"the {cfg.explainer.backend} backend needs the llm extra "
            f"(pip install 'battery-inspector[llm]'): {exc}"
        ) from None
    except RuntimeError as exc:
        log.error(
            "the %s backend failed to load (%s); explaining from the facts only",
            cfg.explainer.backend,
            exc,
        )
        return TemplateWriter()


def _recipe_or_none(bundle: Path) -> Recipe | None:
    """The bundle's recipe (for sizes in mm); without one, sizes come from the results."""
    try:
        return load_recipe(bundle)
    except (OSError, ValueError) as exc:
        log.warning("no recipe (%s): sizes come from the stored results", exc)
        return None


def _start_outbox(cfg: Config, store: Store) -> tuple[MqttLink, OutboxPublisher]:
    """The explainer's MQTT link and the outbox that publishes stored explanations, started."""
    from inspector.comms.mqtt import MqttLink  # paho: only when MQTT is configured
    from inspector.comms.outbox import OutboxPublisher  # paho

    link = MqttLink(cfg.mqtt, cfg.station.line, cfg.station.station, role="explainer", will=False)
    outbox = OutboxPublisher(store, link, topic="explanation")
    link.start()
    outbox.start()
    return link, outbox


def _ignore_sighup(signum, frame) -> None:
    log.warning("SIGHUP ignored: restart the service to read the configuration again")


@app.command()
def explain(
    config: Path = typer.Option(..., "--config", "-c", help="The station's YAML config file."),
    once: bool = typer.Option(
        False, "--once", help="Explain the jobs that are due now, then exit (no waiting)."
    ),
) -> None:
    """Explain rejects: take queued jobs from the store in order, one at a time, store each
    explanation and publish it on the MQTT explanation topic.

    The backend is explainer.backend in the config: template, openai or batterygpt. A job whose
    backend fails is retried with back-off and, after explainer.retry.max_attempts, explained
    by the template from the measured facts. Runs until SIGTERM or Ctrl-C.
    """
    from inspector.config.station import load_config  # pydantic sections: not at --help
    from inspector.explain.worker import ExplainWorker  # the explainer's stack: not at --help

    with user_errors():
        cfg = load_config(config)
        cfg.explainer.resolve_paths(config.resolve().parent)
    setup_logging(cfg.health.log_format, cfg.health.log_level)
    recipe = _recipe_or_none(cfg.bundle)
    with user_errors():
        writer = _load_writer(cfg)
    store = Store(cfg.data_dir)
    link, outbox = _start_outbox(cfg, store) if cfg.mqtt.enabled else (None, None)

    def publish(cell_id: str, frame_id: str, text: str, writer_name: str) -> None:
        if outbox is not None:  # stored already: the outbox publishes it, now or later
            outbox.wake()

    worker = ExplainWorker(store, writer, cfg.explainer, recipe, publish)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, _ignore_sighup)
    try:
        sd_notify("READY=1", f"STATUS=explaining with {writer.name}")
        log.info(
            "explainer ready: backend %s, %d job(s) waiting", writer.name, store.pending_jobs()
        )
        if once:
            from tqdm import tqdm  # not at --help

            with tqdm(total=store.pending_jobs(), desc="explaining", unit="reject") as bar:
                while not stop.is_set() and (outcome := worker.run_once()) is not None:
                    bar.update(outcome.state == "done")
            if outbox is not None and link.wait_connected(10) and not outbox.flush(30):
                log.warning("some explanations stay in the store for the next run")
        else:
            worker.run(stop)
    finally:
        sd_notify("STOPPING=1")
        if link is not None:
            outbox.stop()
            link.stop(final_status=None)
        writer.close()
        c = worker.counts
        fallback = (
            f", {c['fallback']} from the facts after the {writer.name} backend failed"
            if writer.name != "template"
            else ""
        )
        typer.echo(
            f"explained {c['done']} reject(s) with {writer.name}{fallback}; {c['retry']} "
            f"attempt(s) to retry; {store.pending_jobs()} waiting"
        )
        store.close()
