"""The review page in a real headless Chromium, driven from the keyboard only: sign in, tab to an item's tag, pick
another tag with the arrow keys, press Enter on Decide; the item leaves the queue and the decision, naming the
signed-in reviewer, reaches the feedback topic."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from stream_app import APPROVED_TAGS
from tests.integration.test_review import PASSWORD, read_topic, review_worker

pytestmark = [pytest.mark.kafka, pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """Debian's headless Chromium (installed by ``scripts/chromium``) with a fresh profile."""
    subprocess.run([ROOT / "scripts" / "chromium", "install"], check=True, capture_output=True)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()


def test_a_reviewer_signs_in_and_decides_an_item_with_the_keyboard_alone(
    browser: webdriver.Chrome, start_worker: Any, new_topic: Any, tmp_path: Path
) -> None:
    started = review_worker(start_worker, new_topic, tmp_path, "keyboard-reviewer")
    worker, first, suggested = started.worker, started.first, started.suggested

    browser.get(f"http://127.0.0.1:{worker.port}/review")
    assert browser.find_elements(By.CSS_SELECTOR, "select") == []  # read-only until signed in
    browser.find_element(By.LINK_TEXT, "sign in").send_keys(Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "name"))
    tab_to(browser, "name")
    browser.switch_to.active_element.send_keys("keyboard-reviewer", Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "password"
    browser.switch_to.active_element.send_keys(PASSWORD, Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda b: "Signed in as" in b.page_source)

    tab_to(browser, "tag-0")
    position = APPROVED_TAGS.index(suggested[first])
    key = Keys.ARROW_DOWN if position < len(APPROVED_TAGS) - 1 else Keys.ARROW_UP
    browser.switch_to.active_element.send_keys(key)
    chosen = APPROVED_TAGS[position + (1 if key == Keys.ARROW_DOWN else -1)]
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Decide"
    browser.switch_to.active_element.send_keys(Keys.ENTER)

    WebDriverWait(browser, 10).until(lambda b: "Saved:" in b.page_source)
    assert browser.find_element(By.CSS_SELECTOR, "[role=status]").text.startswith(f"Saved: {first}")
    shown = [a.get_attribute("data-id") for a in browser.find_elements(By.CSS_SELECTOR, "article[data-id]")]
    assert first not in shown  # it left the queue at once
    (feedback,) = read_topic(started.bootstrap, started.feedback_topic, 1)
    assert (feedback["id"], feedback["tag"], feedback["verdict"], feedback["reviewer"]) == (
        first,
        chosen,
        "corrected",
        "keyboard-reviewer",
    )
    browser.get(f"http://127.0.0.1:{worker.port}/review")
    shown = [a.get_attribute("data-id") for a in browser.find_elements(By.CSS_SELECTOR, "article[data-id]")]
    assert first not in shown  # and stays gone once the feedback is read


def tab_to(browser: webdriver.Chrome, element_id: str) -> None:
    """Press Tab until the element with ``element_id`` has the focus; fail if 15 presses do not reach it."""
    for _ in range(15):
        if browser.switch_to.active_element.get_attribute("id") == element_id:
            return
        browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == element_id, f"{element_id} not reachable by Tab"
