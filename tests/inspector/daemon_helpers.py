"""Shared pieces of the daemon tests: a calibrated tiny bundle, configs, a queue-fed source."""

from __future__ import annotations

import contextlib
import queue
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config.station import Config, parse_config
from inspector.sources.base import Frame, Source, SourceError
from models.recipe import load_recipe, save_recipe
from tests.broker import Collector
from tests.conftest import paste_foreign, textured


@pytest.fixture(scope="session")
def line_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle scoring by its memory bank only: a plain texture scores about 0.4 and a
    pasted checkerboard about 0.62, so the default thresholds (0.5) pass one and fail the other.
    """
    out = tmp_path_factory.mktemp("line_bundle") / "tiny"
    shutil.copytree(tiny_bundle, out)
    recipe = load_recipe(out)
    recipe.fusion = "memory"
    save_recipe(out, recipe)
    return out


def memory_only_tiny_bundle(out: Path, reference_dir: Path, **create: object) -> Path:
    """A tiny bundle from the reference images, scoring by its memory bank only; ``create``
    goes to ``create_bundle`` (``seed``, ``median_weight``)."""
    from models.bundle import create_bundle
    from models.image_io import list_images, read_image

    refs = [read_image(p) for p in list_images(reference_dir)]
    create_bundle(out, "tiny", "pouch cell", reference_images=refs, **create)
    recipe = load_recipe(out)
    recipe.fusion = "memory"
    save_recipe(out, recipe)
    return out


@pytest.fixture(scope="session")
def patchcore_line_bundle(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The line bundle scored as PatchCore does (median weight 0): a cell that is a little off
    all over (a darker lot, a dimmer lamp) lifts every patch's score, where the default weight
    forgives most of it. For tests of what the station does about such cells."""
    out = tmp_path_factory.mktemp("patchcore_line_bundle") / "tiny"
    return memory_only_tiny_bundle(out, reference_dir, median_weight=0.0)


@pytest.fixture
def collector(broker) -> Iterator[Collector]:
    """Every message under the station's topic root, for the test's own broker."""
    c = Collector(broker, TOPIC_ROOT)
    yield c
    c.close()


def good_image(seed: int = 5) -> np.ndarray:
    return textured(301, 457, seed=seed)


def bad_image(seed: int = 5) -> np.ndarray:
    return paste_foreign(good_image(seed), (200, 100, 60, 60))


def write_images(folder: Path, images: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"img{i:03d}.png"), img)
    return folder


# the source section when the test hands the daemon its own QueueSource
UNUSED_SOURCE = {"kind": "video", "url": "unused"}


def make_config(
    tmp_path: Path,
    bundle: Path,
    port: int | None,
    source: dict = UNUSED_SOURCE,
    **sections: dict,
) -> Config:
    """A station config for tests: broker on ``port`` (None: MQTT off), no metrics port."""
    data = {
        "station": {"line": "L1", "station": "S1"},
        "data_dir": str(tmp_path / "data"),
        "bundle": str(bundle),
        "source": source,
        "mqtt": {"host": "127.0.0.1", "port": port or 1, "enabled": port is not None}
        | {"heartbeat_s": 0.5, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "pipeline": {"batch_wait_ms": 2},
        "health": {"metrics_port": None, "log_format": "text"},
    }
    for key, value in sections.items():
        data[key] = data.get(key, {}) | value
    return parse_config(data, tmp_path)


TOPIC_ROOT = "inspector/v1/L1/S1/"


class QueueSource(Source):
    """Frames pushed by the test; ``trigger`` makes a frame of a good image for the cell.

    ``fail_next_open`` makes ``open`` raise once; ``lose_device()`` ends ``frames`` with a
    ``SourceError`` as an unplugged camera would.
    """

    name = "queue"

    def __init__(self, image: np.ndarray | None = None) -> None:
        self.q: queue.Queue = queue.Queue()
        self.image = good_image() if image is None else image
        self.opens = 0
        self.acks: list[tuple[str, bool]] = []

    def open(self) -> None:
        self.opens += 1
        stale = []
        while not self.q.empty():  # drop the end marker a previous close() left
            stale.append(self.q.get_nowait())
        for item in stale:
            if item is not None:
                self.q.put(item)

    def frames(self) -> Iterator[Frame]:
        while True:
            item = self.q.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self) -> None:
        self.q.put(None)

    def ack(self, frame: Frame, ok: bool) -> None:
        self.acks.append((frame.cell_id, ok))

    @property
    def triggerable(self) -> bool:
        return True

    def trigger(self, cell_id: str, product: str | None = None) -> None:
        self.q.put(Frame(cell_id, self.image, product=product))

    def push(self, frame: Frame) -> None:
        self.q.put(frame)

    def lose_device(self) -> None:
        self.q.put(SourceError("camera removed"))


@contextlib.contextmanager
def running(daemon) -> Iterator:
    """Start ``daemon`` and always shut it down cleanly afterwards."""
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        daemon.wait_stopped()


@contextlib.contextmanager
def explained_once(cfg: Config, store, recipe=None) -> Iterator[None]:
    """One explanation job done by the template writer, as ``inspector explain --once`` would,
    with its MQTT link kept open inside the block (to wait for the published explanation)."""
    from inspector.comms.mqtt import MqttLink
    from inspector.explain.worker import ExplainWorker
    from inspector.explain.writers import TemplateWriter

    link = MqttLink(cfg.mqtt, "L1", "S1", role="explainer", will=False)
    link.start()
    try:
        assert link.wait_connected(10)
        worker = ExplainWorker(
            store, TemplateWriter(), cfg.explainer, recipe, link.publish_explanation
        )
        assert worker.run_once().state == "done"
        yield
    finally:
        link.stop(final_status=None)
