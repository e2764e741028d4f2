"""Several products on one station: each trigger's product picks its bundle, without a restart.

Real Mosquitto, real SQLite, pylon's emulated camera and two tiny bundles with different
tensors (so different model ids).
"""

from __future__ import annotations

import os

os.environ.setdefault("PYLON_CAMEMU", "2")  # read by pypylon when it is first imported

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from inspector.config.station import Config, parse_config  # noqa: E402
from inspector.runtime.predictor import Predictor  # noqa: E402
from inspector.runtime.products import ProductPool, UnknownProduct, bundle_size_mb  # noqa: E402
from inspector.sources.base import Frame  # noqa: E402
from inspector.station.daemon import Daemon  # noqa: E402
from models.recipe import model_id  # noqa: E402
from tests.broker import publish  # noqa: E402
from tests.inspector.daemon_helpers import (  # noqa: E402
    TOPIC_ROOT,
    UNUSED_SOURCE,
    QueueSource,
    bad_image,
    good_image,
    make_config,
    memory_only_tiny_bundle,
    running,
    write_images,
)


@pytest.fixture(scope="session")
def other_bundle(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    """A second tiny bundle, as the first one but with other random weights (seed 1)."""
    out = tmp_path_factory.mktemp("other_bundle") / "tiny"
    return memory_only_tiny_bundle(out, reference_dir, seed=1)


def products_config(
    tmp_path: Path, bundles: dict[str, Path], port: int, source: dict = UNUSED_SOURCE, **products
) -> Config:
    """A station config (as ``make_config``'s) with ``products`` instead of ``bundle``."""
    data = {
        "station": {"line": "L1", "station": "S1"},
        "data_dir": str(tmp_path / "data"),
        "products": {"bundles": {k: str(v) for k, v in bundles.items()}, **products},
        "source": source,
        "mqtt": {"host": "127.0.0.1", "port": port, "heartbeat_s": 0.5},
        "pipeline": {"batch_wait_ms": 2},
        "health": {"metrics_port": None, "log_format": "text"},
    }
    return parse_config(data, tmp_path)


def test_alternating_products_are_scored_by_their_own_bundles_without_a_restart(
    tmp_path: Path, broker, collector, line_bundle: Path, other_bundle: Path
) -> None:
    ids = {"pouch-a": model_id(line_bundle), "pouch-b": model_id(other_bundle)}
    assert ids["pouch-a"] != ids["pouch-b"]
    folder = write_images(tmp_path / "camera", [good_image(5)])
    source = {"kind": "pylon", "serial": "0815-0000", "emulation_images": str(folder)}
    cfg = products_config(
        tmp_path,
        {"pouch-a": line_bundle, "pouch-b": other_bundle},
        broker.port,
        source=source,
    )
    triggers = [
        ("C-1", "pouch-a"),
        ("C-2", "pouch-b"),
        ("C-3", "pouch-a"),
        ("C-4", "cylinder-21700"),  # not configured on this station
        ("C-5", "pouch-b"),
        ("C-6", "pouch-a"),
    ]
    with running(Daemon(cfg)) as daemon:
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        for cell, product in triggers:
            publish(broker, TOPIC_ROOT + "trigger", {"cell_id": cell, "product": product})
        results = {r["cell_id"]: r for r in collector.wait_for("result", len(triggers))}
        alarm = collector.wait_for("alarm", where=lambda a: a["kind"] == "unknown_product")[0]
        assert daemon.pool.loads == 2, "each bundle loaded once, at the start, and kept warm"
        started = [m for m in collector.on("status") if m["state"] == "online"]
    assert len(started) == 1, "no restart in between"
    for cell, product in triggers:
        r = results[cell]
        assert r["product"] == product
        if product in ids:
            assert r["verdict"] == "pass" and r["model_id"] == ids[product], r
    unknown = results["C-4"]
    assert unknown["verdict"] == "error" and unknown["model_id"] is None
    assert "unknown product 'cylinder-21700'" in unknown["error"]
    assert "pouch-a, pouch-b" in unknown["error"]
    assert alarm["cell_id"] == "C-4" and alarm["product"] == "cylinder-21700"
    assert not [a for a in collector.on("alarm") if a["kind"] == "frame_error"], "one alarm"


def test_a_frame_without_product_takes_the_default_and_without_default_is_an_error(
    tmp_path: Path, broker, collector, line_bundle: Path, other_bundle: Path
) -> None:
    source = QueueSource()
    bundles = {"pouch-a": line_bundle, "pouch-b": other_bundle}
    cfg = products_config(tmp_path, bundles, broker.port, default="pouch-b")
    with running(Daemon(cfg, source=source)):
        source.push(Frame("NONE-1", good_image(3)))
        source.push(Frame("BAD-B", bad_image(3), product="pouch-b"))
        results = {r["cell_id"]: r for r in collector.wait_for("result", 2)}
    assert results["NONE-1"]["product"] == "pouch-b"
    assert results["NONE-1"]["model_id"] == model_id(other_bundle)
    assert results["BAD-B"]["verdict"] == "fail"

    cfg = products_config(tmp_path / "again", bundles, broker.port)
    with running(Daemon(cfg, source=QueueSource())) as daemon:
        daemon.source.push(Frame("NONE-2", good_image(3)))
        result = collector.wait_for("result", where=lambda r: r["cell_id"] == "NONE-2")[0]
    assert result["verdict"] == "error" and "products.default is not set" in result["error"]


def test_an_old_single_bundle_config_still_labels_results_with_the_triggers_product(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    source = QueueSource()
    cfg = make_config(tmp_path, line_bundle, broker.port, UNUSED_SOURCE)
    assert cfg.products is None
    with running(Daemon(cfg, source=source)) as daemon:
        source.trigger("OLD-1", "anything")
        source.push(Frame("OLD-2", good_image(4)))
        results = {r["cell_id"]: r for r in collector.wait_for("result", 2)}
        assert daemon.pool is None
    assert results["OLD-1"]["product"] == "anything"
    assert results["OLD-2"]["product"] == "pouch cell"  # the recipe's noun, as before
    assert {r["model_id"] for r in results.values()} == {model_id(line_bundle)}


def test_the_pool_keeps_bundles_warm_and_puts_the_least_recently_used_aside(
    tmp_path: Path, line_bundle: Path, other_bundle: Path
) -> None:
    third = tmp_path / "third"
    shutil.copytree(line_bundle, third)
    size = bundle_size_mb(line_bundle)
    bundles = {"a": line_bundle, "b": other_bundle, "c": third}
    pool = ProductPool(bundles, "torch", budget_mb=2.5 * size)
    assert pool.preload() == ["a", "b"], "the third does not fit the budget"
    a = pool.get("a")
    assert isinstance(a, Predictor) and pool.get("a") is a and pool.loads == 2
    pool.get("c")  # b is the least recently used now
    assert pool.loaded() == ["a", "c"] and pool.loads == 3
    assert pool.get("a") is a, "a stayed warm"
    with pytest.raises(UnknownProduct, match="unknown product 'd' .configured: a, b, c."):
        pool.get("d")
    with pytest.raises(UnknownProduct, match="names no product"):
        pool.get(None)
    pool.close()
    assert pool.loaded() == []


def test_a_bundle_that_cannot_be_loaded_fails_its_products_cells_only(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "recipe.yaml").write_text("arch: [not, a, recipe\n")
    source = QueueSource()
    bundles = {"pouch-a": line_bundle, "pouch-b": broken}
    cfg = products_config(tmp_path, bundles, broker.port, default="pouch-a", preload=False)
    with running(Daemon(cfg, source=source)):
        source.push(Frame("B-1", good_image(3), product="pouch-b"))
        source.push(Frame("A-1", good_image(3), product="pouch-a"))
        results = {r["cell_id"]: r for r in collector.wait_for("result", 2)}
        alarm = collector.wait_for("alarm", where=lambda a: a["kind"] == "product_load_failed")
    assert results["A-1"]["verdict"] == "pass"
    assert results["B-1"]["verdict"] == "error" and results["B-1"]["model_id"] is None
    assert "bundle of product pouch-b not loaded" in results["B-1"]["error"]
    assert alarm[0]["severity"] == "critical" and alarm[0]["cell_id"] == "B-1"
