"""The render form in the real Prefect UI, driven in headless Chromium (slow; skipped without Chromium).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them when it can) and the
``selenium`` package (the ``dev`` extra). Screenshots go to ``$PYTTI_UI_SCREENSHOTS`` when it is set.
"""

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.local_stack import LocalStack

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),  # a Prefect server start takes minutes on a busy 2-core machine
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--window-size=1400,1800",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.implicitly_wait(20)
    yield driver
    driver.quit()


def _shot(driver: Any, name: str) -> None:
    folder = os.environ.get("PYTTI_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def _type(element: Any, text: str) -> None:
    """Select all and type over it, as a user pastes over the example (``clear()`` bypasses React's
    change events, and an emptied "Scene text" box sends the form back to the "Scene file" tab)."""
    from selenium.webdriver.common.keys import Keys

    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(text)


def _wait(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out waiting for the UI"
        time.sleep(0.5)
    return value


def test_the_render_form_in_the_prefect_ui(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with LocalStack(tmp_path / "prefect", startup_timeout=420) as stack:
        stack.prefect("work-pool", "create", "pytti-gpu", "--type", "process", timeout=600)
        stack.prefect("deploy", "--prefect-file", "deploy/prefect.yaml", "--name", "render-one", timeout=600)
        deployment = stack.api("GET", "/deployments/name/render-scene/render-one").json()
        base = stack.api_url.removesuffix("/api")
        browser.get(f"{base}/v2/deployments/deployment/{deployment['id']}/run")
        body = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731

        # Two tabs for the scene source; the chosen one is required, not "(Optional)".
        _wait(lambda: "Scene text" in body())
        text = body()
        assert "Scene file\nScene text" in text and "Scene file (Optional)" not in text
        assert "Width (Optional)\nOverride the width in pixels, 16 to 8192 (empty: the scene's)" in text
        assert "str\nNone" not in text and "int\nNone" not in text, "no str/None chooser per field"
        device = browser.find_element(
            By.XPATH, "//button[@aria-haspopup='listbox' and @aria-label='Select Device']"
        )
        assert device.text == "auto", "device is a choice list"
        _shot(browser, "form-scene-file")

        # "Scene text": a multi-line box that starts with an example scene.
        browser.find_element(By.XPATH, "//button[@role='tab' and normalize-space()='Scene text']").click()
        box = _wait(
            lambda: [t for t in browser.find_elements(By.TAG_NAME, "textarea") if "title:" in t.text]
        )[0]
        assert box.size["height"] >= 150 and "title: My scene" in box.get_attribute("value")
        _type(box, "title: Browser test\nwidth: 32\nheight: 32\nscenes:\n  - prompts: a\n    frames: 2\n")

        # width 5 is refused under its own field; no run is created.
        width = browser.find_elements(By.CSS_SELECTOR, "input[type=number]")[1]
        _type(width, "5")
        browser.find_element(By.XPATH, "//button[normalize-space()='Submit']").click()
        _wait(lambda: "5 is less than the minimum of 16" in body())
        _shot(browser, "form-width-5")
        assert stack.api("POST", "/flow_runs/filter", json={}).json() == []

        # A valid form with a typed run name creates the run under that name (on a fresh form).
        browser.get(f"{base}/v2/deployments/deployment/{deployment['id']}/run")
        _wait(lambda: "Scene text" in body())
        browser.find_element(By.XPATH, "//button[@role='tab' and normalize-space()='Scene text']").click()
        box = _wait(
            lambda: [t for t in browser.find_elements(By.TAG_NAME, "textarea") if "title:" in t.text]
        )[0]
        _type(box, "title: Browser test\nwidth: 32\nheight: 32\nscenes:\n  - prompts: a\n    frames: 2\n")
        _type(browser.find_elements(By.CSS_SELECTOR, "input[type=number]")[1], "64")
        _type(
            browser.find_element(By.XPATH, "//label[normalize-space()='Run Name']/following::input[1]"),
            "storm test",
        )
        browser.find_element(By.XPATH, "//button[normalize-space()='Submit']").click()
        try:
            (run,) = _wait(lambda: stack.api("POST", "/flow_runs/filter", json={}).json(), timeout=240)
        finally:
            _shot(browser, "form-submitted")
        assert run["name"] == "storm test"
        params = run["parameters"]["params"]
        assert params["width"] == 64 and params["scene_text"].startswith("title: Browser test")
        assert "scene_path" not in params
