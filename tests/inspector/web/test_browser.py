"""The page in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium):
log in, open a reject, see the overlay load, ask a follow-up and see the answer appear; and the
feedback round trip from marking false rejects on the page to a bundle that passes them."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from inspector.config.station import load_config  # noqa: E402
from inspector.offline.calibration import calibrate  # noqa: E402
from inspector.runtime.predictor import Predictor  # noqa: E402
from inspector.sources.base import Frame  # noqa: E402
from inspector.station.daemon import Daemon  # noqa: E402
from models.image_io import list_images  # noqa: E402
from models.recipe import load_recipe  # noqa: E402
from tests.cli_helpers import run_inspector  # noqa: E402
from tests.conftest import textured  # noqa: E402
from tests.inspector.daemon_helpers import (  # noqa: E402
    QueueSource,
    bad_image,
    running,
    write_images,
)
from tests.inspector.web.conftest import FRAME_SHAPE, SERVE_TOKEN, serving  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture()
def browser() -> Iterator[webdriver.Chrome]:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not try to download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1300,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    yield driver
    driver.quit()


def test_technician_logs_in_sees_the_overlay_and_chats(server: str, browser) -> None:
    wait = WebDriverWait(browser, 20)
    browser.get(server + "/rejects/f-1")
    wait.until(lambda d: "/login" in d.current_url)  # refused without the token
    assert "cell-001" not in browser.page_source

    browser.find_element(By.NAME, "secret").send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.CLASS_NAME, "error"))
    browser.find_element(By.NAME, "secret").send_keys(SERVE_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(lambda d: d.current_url.endswith("/rejects/f-1"))
    assert "cell-001" in browser.find_element(By.TAG_NAME, "h1").text

    overlay = browser.find_element(By.CSS_SELECTOR, ".heat img")
    loaded = "return arguments[0].complete && arguments[0].naturalWidth"
    width = wait.until(lambda d: d.execute_script(loaded, overlay))
    assert width == FRAME_SHAPE[1]

    browser.find_element(By.NAME, "question").send_keys("How big is region 1?")
    browser.find_element(By.CSS_SELECTOR, "form.ask button").click()
    answer = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant .text"))
    assert "Region 1 (upper left) covers 900 px" in answer[0].text
    browser.refresh()
    assert "How big is region 1?" in browser.find_element(By.CSS_SELECTOR, ".msg.user").text
    # nothing blocked by the Content-Security-Policy, no script errors, no failed loads
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [e for e in errors if "/login" not in e] == []


def _dimmed(seed: int) -> np.ndarray:
    """A normal cell of a darker foil lot (20 % less light) than the bundle was made from."""
    return (textured(301, 457, seed=seed).astype(np.float32) * 0.8).astype(np.uint8)


ROUND_TRIP_CONFIG = """\
station: {line: L1, station: S1}
data_dir: data
bundle: bundle
source: {kind: video, url: unused.mp4}
mqtt: {enabled: false}
health: {metrics_port: null, log_format: text}
web: {token_env: INSPECTOR_WEB_TEST_TOKEN}
feedback: {keep_passed_every: 1}
"""


@pytest.mark.slow
def test_two_false_rejects_marked_on_the_page_pass_after_bundle_update(
    tmp_path: Path, browser, patchcore_line_bundle: Path
) -> None:
    """The feedback round trip: the line (scored as PatchCore does, where a darker lot lifts
    every score) rejects two cells of a darker (normal) lot and two with planted defects; a
    technician marks the two false rejects on the page, the defects are confirmed over the API;
    `inspector feedback export` and `inspector bundle update --add-normals` follow; then the
    two frames pass and the planted defects still fail."""
    bundle, calibration = tmp_path / "bundle", tmp_path / "calibration"
    shutil.copytree(patchcore_line_bundle, bundle)
    write_images(calibration, [textured(301, 457, seed=s) for s in range(100, 130)])
    predictor = Predictor(bundle, "torch")
    calibrate(predictor, list_images(calibration), progress=False)
    predictor.close()

    config = tmp_path / "station.yaml"
    config.write_text(ROUND_TRIP_CONFIG)
    frames = {f"OK-{i}": textured(301, 457, seed=40 + i) for i in range(4)}
    frames |= {"LOT-1": _dimmed(10), "LOT-2": _dimmed(11)}
    frames |= {f"DEF-{i}": bad_image(20 + i) for i in (1, 2)}
    stored: list[dict] = []
    all_stored = threading.Event()

    def on_result(_row: int, payload: dict, _frame: Frame) -> None:
        stored.append(payload)
        if len(stored) == len(frames):
            all_stored.set()

    source = QueueSource()
    with running(Daemon(load_config(config), source=source, on_result=on_result)):
        for cell, image in frames.items():
            source.push(Frame(cell, image))
        assert all_stored.wait(120)
    verdicts = {p["cell_id"]: p["verdict"] for p in stored}
    assert verdicts == {cell: "pass" if cell.startswith("OK") else "fail" for cell in frames}

    wait = WebDriverWait(browser, 20)
    with serving(config, {"INSPECTOR_WEB_TEST_TOKEN": SERVE_TOKEN}) as url:
        browser.get(url + "/rejects")
        browser.find_element(By.NAME, "secret").send_keys(SERVE_TOKEN)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        for cell in ("LOT-1", "LOT-2"):
            wait.until(lambda d: d.current_url.endswith("/rejects"))
            browser.find_element(By.LINK_TEXT, cell).click()
            wait.until(lambda d, c=cell: c in d.find_element(By.TAG_NAME, "h1").text)
            browser.find_element(By.CSS_SELECTOR, ".label-form input[name=note]").send_keys(
                "new foil lot, darker; no defect"
            )
            browser.find_element(By.CSS_SELECTOR, ".label-form button.false-reject").click()
            label = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".labels .false_reject"))
            assert "False reject" in label[0].text and "by token" in label[0].text
            assert "new foil lot" in label[0].text
            browser.get(url + "/rejects")
        listed = browser.find_elements(By.CSS_SELECTOR, "div.label.false_reject")
        assert len(listed) == 2  # the list shows which rejects are labelled
        for cell in ("DEF-1", "DEF-2"):
            answer = httpx.post(
                f"{url}/api/rejects/{cell}/feedback",
                json={"label": "confirmed", "note": "foreign particle"},
                headers={"Authorization": f"Bearer {SERVE_TOKEN}"},
            )
            assert answer.status_code == 201, answer.text
            assert answer.json() | {"ts": None} == {
                "frame_id": answer.json()["frame_id"], "cell_id": cell, "label": "confirmed",
                "note": "foreign particle", "user": "token", "channel": "api", "ts": None,
            }
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert [e for e in errors if "/login" not in e] == []

    out = tmp_path / "feedback"
    exported = run_inspector("feedback", "export", "--config", str(config), "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    dataset = out / "pouch-cell"
    counts = [len(list_images(dataset / d)) for d in ("train/good", "test/good", "test/confirmed")]
    assert counts == [2, 4, 2]

    updated = run_inspector(
        "bundle", "update", str(bundle), "--add-normals", str(dataset),
        "--calibration", str(calibration),
    )
    assert updated.returncode == 0, updated.stderr
    print(updated.stdout)
    rows = {line[:32].strip(): line[32:].split() for line in updated.stdout.splitlines()}
    assert rows["false rejects, added images"] == ["2/2", "=", "100.0%", "0/2", "=", "0.0%"]
    assert rows["escapes, labelled defects"] == ["0/2", "=", "0.0%", "0/2", "=", "0.0%"]

    after = Predictor(bundle, "torch")
    try:
        again = {cell: after.inspect(image).verdict for cell, image in frames.items()}
    finally:
        after.close()
    assert again["LOT-1"] == again["LOT-2"] == "pass"  # the two false rejects now pass
    assert again["DEF-1"] == again["DEF-2"] == "fail"  # the planted defects still fail
    assert [again[f"OK-{i}"] for i in range(4)] == ["pass"] * 4
    steps = [s.command for s in load_recipe(bundle).lineage]
    assert steps[-1] == "bundle update"
