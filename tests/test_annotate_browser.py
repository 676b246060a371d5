"""The annotation page in headless Chromium (Debian's chromium and chromium-driver, through
selenium): two annotators label a batch with the keyboard only (labels, skip, a note, undo), then
the stored labels and `evaluator agreement`'s inter-annotator statistics are checked.

Skipped on a machine without Chromium that cannot install it; never skipped in CI (CI=true)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from evaluator.humans.annotate.app import build_app
from evaluator.humans.annotate.server import serving
from evaluator.store import Store
from tests.support import chromium
from tests.support.annotate_page import TOKEN, invoke, page_config

OPPOSITE = {"factual": "hallucinated", "hallucinated": "factual"}
KEYS = {"factual": "1", "hallucinated": "2"}


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module's tests."""
    binary, driver, why = chromium.find_or_install()
    if not (binary and driver):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the browser tests must run in CI: {why}")
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*chromium.CHROMIUM_FLAGS, "--window-size=1280,900"):
        options.add_argument(flag)
    session = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver),
                               options=options)
    yield session
    session.quit()


@pytest.fixture
def db(annotation_batch, tmp_path: Path) -> Path:
    copy = tmp_path / "evaluator.duckdb"
    shutil.copyfile(annotation_batch[0], copy)
    return copy


class Annotator:
    """One person at the keyboard."""

    def __init__(self, browser: webdriver.Chrome):
        self.browser = browser

    def press(self, *keys: str) -> None:
        """Type into whatever has the focus, as a person does (the page itself, or a field)."""
        ActionChains(self.browser).send_keys(*keys).perform()

    def text(self, css: str) -> str:
        """The element's text once the page shows it (read again if a page load replaced it)."""
        return WebDriverWait(self.browser, 10, ignored_exceptions=(WebDriverException,)).until(
            lambda b: b.find_element(By.CSS_SELECTOR, css).text, f"{css} never showed")

    def _wait(self, done, message: str) -> None:
        """Until `done(browser)` and the page's key handler is on, across page loads. Meanwhile an
        element may be missing or stale, and Chromium may answer any WebDriver error for a node
        of the page being replaced ("Node with given id does not belong to the document"), so
        every WebDriver error is read as "not yet"; the last one is in the timeout's report."""
        WebDriverWait(self.browser, 10, ignored_exceptions=(WebDriverException,)).until(
            lambda b: done(b) and b.find_element(By.CSS_SELECTOR, "html.keys"), message)

    def wait_for(self, css: str, text: str) -> None:
        self._wait(lambda b: text in b.find_element(By.CSS_SELECTOR, css).text,
                   f"{css} never showed {text!r}")

    def wait_for_item(self, trace_id_before: str) -> str:
        """The trace id of the item page that replaced the one showing `trace_id_before`."""
        self._wait(lambda b: b.find_element(By.ID, "trace-id").text != trace_id_before,
                   f"still on {trace_id_before}")
        return self.text("#trace-id")

    def start(self, base: str, name: str, batch: str) -> None:
        self.browser.delete_all_cookies()
        self.browser.get(f"{base}/login?token={TOKEN}")
        field = self.browser.find_element(By.ID, "annotator")
        field.send_keys(name, Keys.ENTER)
        self.wait_for(".who", name)
        self.browser.find_element(By.LINK_TEXT, batch).click()
        self.wait_for("#progress", "0 of 8 labelled")

    def label_all(self, choose, total: int) -> None:
        """Press the key of `choose(trace_id)` on every item until the batch is done."""
        for done in range(total):
            trace_id = self.text("#trace-id")
            self.press(KEYS[choose(trace_id)])
            if done + 1 < total:
                self.wait_for_item(trace_id)
        self.wait_for("#progress", f"{total} of {total} labelled")


def judge_labels(db: Path) -> dict[str, str]:
    with Store(db, read_only=True) as store:
        return dict(store.conn.execute(
            "SELECT trace_id, label FROM evaluations WHERE rubric = 'hallucination'").fetchall())


def stored(db: Path) -> dict[tuple[str, str], tuple[str, str | None]]:
    with Store(db, read_only=True) as store:
        return {(trace_id, who): (label, note) for trace_id, who, label, note in store.conn.execute(
            "SELECT trace_id, annotator, label, note FROM human_labels").fetchall()}


def test_two_annotators_label_a_batch_with_the_keyboard_and_agreement_reads_it(
        browser, db: Path, annotation_batch):
    batch = annotation_batch[1]
    judge = judge_labels(db)
    person = Annotator(browser)
    with serving(build_app(page_config(db))) as base:
        person.start(base, "ana", batch)
        first = person.text("#trace-id")
        person.press("s")                                   # skip: the item comes back last
        second = person.wait_for_item(first)
        person.press("t")                                   # the note; digits typed there stay text
        person.press("robot 1, drone 2", Keys.ESCAPE)
        person.press(KEYS[OPPOSITE[judge[second]]])         # a wrong label ...
        person.wait_for("#progress", "1 of 8 labelled")
        person.press("u")                                   # ... undone: back on that item
        person.wait_for("#progress", "0 of 8 labelled")
        assert person.text("#trace-id") == second
        person.press("t")
        person.press("robot 1, drone 2", Keys.ESCAPE)
        person.label_all(lambda trace_id: judge[trace_id], 8)

        bo_flips = set(sorted(trace_id for trace_id, _ in stored(db))[:3])
        person.browser.get(f"{base}/?switch=1")
        field = person.browser.find_element(By.ID, "annotator")
        field.clear()
        field.send_keys("bo", Keys.ENTER)
        person.wait_for(".who", "bo")
        person.browser.find_element(By.LINK_TEXT, batch).click()
        person.wait_for("#progress", "0 of 8 labelled")
        person.label_all(lambda t: OPPOSITE[judge[t]] if t in bo_flips else judge[t], 8)

    labels = stored(db)
    items = sorted({trace_id for trace_id, _ in labels})
    assert len(items) == 8 and first in items
    expected = {(t, "ana"): (judge[t], "robot 1, drone 2" if t == second else None) for t in items}
    expected |= {(t, "bo"): (OPPOSITE[judge[t]] if t in bo_flips else judge[t], None)
                 for t in items}
    assert labels == expected

    report = json.loads(invoke("agreement", "--json", "--db", str(db), "--rubric",
                               "hallucination", "--n-boot", "0"))
    [group] = [g for g in report["groups"] if g["rubric"] == "hallucination"]
    inter = group["inter_annotator"]
    assert inter["annotators"] == ["ana", "bo"] and inter["n_units"] == 8
    code = {"factual": 0, "hallucinated": 1}
    matrix = np.array([[code[labels[(t, who)][0]] for t in items] for who in ("ana", "bo")],
                      dtype=float)
    assert abs(inter["alpha"]["value"] - krippendorff.alpha(
        reliability_data=matrix, level_of_measurement="nominal")) < 1e-9
