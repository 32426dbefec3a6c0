"""The review page in a real headless Chromium, driven from the keyboard only: tab to an item's tag, pick another
tag with the arrow keys, type a name, press Enter; the decision reaches the feedback topic."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from stream_app import APPROVED_TAGS
from stream_app.replay import event_value, read_rows
from tests.integration.harness import produce, read_outputs, run
from tests.integration.test_review import read_topic, waiting_ids

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


def test_a_reviewer_decides_an_item_with_the_keyboard_alone(
    browser: webdriver.Chrome, start_worker: Any, new_topic: Any
) -> None:
    feedback_topic = new_topic("feedback")
    worker, topics = start_worker(TAGGER_REVIEW_THRESHOLD="0.99", TAGGER_FEEDBACK_TOPIC=feedback_topic)
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    rows = read_rows(ROOT / "data" / "dataset.csv")[:10]
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), None) for r in rows]))
    outputs = run(read_outputs(bootstrap, topics, len(rows), 120, settle=1.0))
    suggested = {str(r["id"]): r["suggested_tag"] for r in outputs["review"]}
    deadline = time.monotonic() + 30
    while not waiting_ids(worker.port) and time.monotonic() < deadline:
        time.sleep(0.5)
    first = waiting_ids(worker.port)[0]

    browser.get(f"http://127.0.0.1:{worker.port}/review")
    for _ in range(10):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.get_attribute("id") == "tag-0":
            break
    assert browser.switch_to.active_element.get_attribute("id") == "tag-0", "the tag choice is not reachable by Tab"
    position = APPROVED_TAGS.index(suggested[first])
    key = Keys.ARROW_DOWN if position < len(APPROVED_TAGS) - 1 else Keys.ARROW_UP
    browser.switch_to.active_element.send_keys(key)
    chosen = APPROVED_TAGS[position + (1 if key == Keys.ARROW_DOWN else -1)]
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "reviewer-0"
    browser.switch_to.active_element.send_keys("keyboard reviewer", Keys.ENTER)

    deadline = time.monotonic() + 10
    while "Saved:" not in browser.page_source and time.monotonic() < deadline:
        time.sleep(0.2)
    assert browser.find_element(By.CSS_SELECTOR, "[role=status]").text.startswith(f"Saved: {first}")
    (feedback,) = read_topic(bootstrap, feedback_topic, 1)
    assert (feedback["id"], feedback["tag"], feedback["verdict"], feedback["reviewer"]) == (
        first, chosen, "corrected", "keyboard reviewer"
    )
