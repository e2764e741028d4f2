"""One measurement per defect region: the MQTT result, the technicians' page, the explanation
on MQTT and the chat give the same numbers (a quality database joins them)."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from inspector.config.web import WebConfig
from inspector.sources.base import Frame
from inspector.station.daemon import Daemon
from inspector.store.db import Store
from inspector.web.app import create_app
from inspector.web.chat import ExplainerChat
from models.recipe import load_recipe, save_recipe
from tests.conftest import paste_foreign
from tests.inspector.daemon_helpers import (
    QueueSource,
    explained_once,
    good_image,
    make_config,
    running,
)

TOKEN = "truth-token-7"
PITCH_MM = 0.05


@pytest.fixture()
def pitched_bundle(line_bundle: Path, tmp_path: Path) -> Path:
    """The line bundle with a pixel pitch, so that regions have areas in mm^2 too."""
    out = tmp_path / "bundle"
    shutil.copytree(line_bundle, out)
    recipe = load_recipe(out)
    recipe.pixel_pitch_mm = PITCH_MM
    save_recipe(out, recipe)
    return out


def region_numbers(region: dict) -> dict:
    """What the result says about a region, in the words and digits the page uses."""
    x, y, w, h = region["bbox"]
    return {
        "box": f"{w} x {h}",
        "at": f"{x}, {y}",
        "area_px": f"{region['area_px']:,.0f}",
        "area_mm2": f"{region['area_mm2']:,.2f}",
        "peak": f"{region['peak']:.2f}",
    }


def test_a_reject_reads_the_same_on_mqtt_on_the_page_and_in_the_explanation(
    tmp_path: Path, broker, collector, pitched_bundle: Path
) -> None:
    # two defects on a frame whose size is no multiple of the model's 224 px
    image = paste_foreign(good_image(7), (201, 97, 61, 59))
    image = paste_foreign(image, (37, 211, 45, 41), seed=3)
    source = QueueSource()
    cfg = make_config(tmp_path, pitched_bundle, broker.port)
    with running(Daemon(cfg, source=source)):
        source.push(Frame("BAD-7", image, product="pouch"))
        result = collector.wait_for("result")[0]
    assert result["verdict"] == "fail" and len(result["regions"]) >= 1

    recipe = load_recipe(pitched_bundle)
    store = Store(cfg.data_dir)
    with explained_once(cfg, store, recipe):
        explanation = collector.wait_for("explanation")[0]

    chat = ExplainerChat(cfg.data_dir, None, recipe)
    reject = store.reject(result["frame_id"])
    facts = chat.context(reject).facts  # what the explainer's backends are given
    keys = ("bbox", "area_px", "centroid", "peak", "mean", "position", "area_mm2")
    assert [{k: r[k] for k in keys} for r in result["regions"]] == [
        {
            "bbox": list(f.bbox), "area_px": f.area_px, "centroid": list(f.centroid),
            "peak": f.peak, "mean": f.mean, "position": f.position, "area_mm2": f.area_mm2,
        }
        for f in facts.regions
    ]  # fmt: skip

    web = WebConfig(token=SecretStr(TOKEN), token_env=None)
    client = TestClient(create_app(store, chat, web))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = html.unescape(client.get(f"/rejects/{result['frame_id']}", headers=auth).text)
    answer = chat(reject, [], "How big is region 1?")  # the page's chat
    store.close()
    text = explanation["text"]
    assert text in page  # the page shows the explanation as published
    for n, region in enumerate(result["regions"], start=1):
        said = region_numbers(region)
        assert f'<td class="num">{said["box"]}</td>' in page
        assert f"at {said['at']}" in page and f">{said['area_px']}<" in page
        assert f">{said['area_mm2']}<" in page and f">{said['peak']}<" in page
        x, y = said["at"].split(", ")
        assert f"Region {n} ({region['position']})" in text
        assert f"x={x}, y={y}, {said['box']} px" in text
        assert f"{said['area_px']} px ({said['area_mm2']} mm^2)" in text
        assert f"peak score {said['peak']}" in text
    first = region_numbers(result["regions"][0])
    assert f"{first['area_px']} px ({first['area_mm2']} mm^2)" in answer
