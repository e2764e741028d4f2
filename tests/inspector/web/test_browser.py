"""The page in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium):
log in, open a reject, see the overlay load, ask a follow-up and see the answer appear."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.inspector.web.conftest import FRAME_SHAPE, SERVE_TOKEN  # noqa: E402

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
