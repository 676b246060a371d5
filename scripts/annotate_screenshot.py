"""Take docs/annotate.png: the annotation page over a batch of the bundled sample traces.

    .venv/bin/python scripts/annotate_screenshot.py [--out docs/annotate.png]

In a temporary directory: `evaluator run` judges the first 300 sample traces for faithfulness
with the offline judge, `evaluator labels export` draws a batch of 20, and the page is served
on 127.0.0.1. Headless Chromium (Debian's chromium and chromium-driver, through selenium) labels
three items with the keyboard, starts a note on the fourth and saves the window.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from evaluator.cli import cli
from evaluator.core.settings import PROJECT_ROOT
from evaluator.humans.annotate.app import PageConfig, build_app
from evaluator.humans.annotate.queue import AnnotationQueue
from evaluator.humans.annotate.security import new_token
from evaluator.humans.annotate.server import serving
from evaluator.rubrics import RubricRegistry

TRACES = 300
BATCH = 20
LABELLED = 3
WINDOW = (1280, 900)


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if result.exit_code != 0:
        sys.exit(f"evaluator {' '.join(args)} failed: {result.output}")
    return result.output


def judged_batch(tmp: Path) -> Path:
    lines = (PROJECT_ROOT / "datasets" / "sample_traces.jsonl").read_text().splitlines()
    traces = tmp / "traces.jsonl"
    traces.write_text("\n".join(lines[:TRACES]) + "\n", encoding="utf-8")
    db = tmp / "evaluator.duckdb"
    invoke("run", "--traces", str(traces), "--db", str(db), "--sample-rate", "1.0",
           "--rubric", "faithfulness", "--json")
    json.loads(invoke("labels", "export", "--rubric", "faithfulness", "--n", str(BATCH),
                      "--out", str(tmp / "batch"), "--db", str(db), "--json"))
    return db


def chrome() -> webdriver.Chrome:
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        sys.exit("needs headless Chromium: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "annotate.png")
    out = parser.parse_args().out
    with tempfile.TemporaryDirectory() as tmp:
        db = judged_batch(Path(tmp))
        token = new_token()
        queue = AnnotationQueue(db, RubricRegistry.load(PROJECT_ROOT / "rubrics"))
        browser = chrome()
        try:
            with serving(build_app(PageConfig(queue, token, annotator="ana"))) as base:
                browser.get(f"{base}/login?token={token}")
                browser.find_element(By.LINK_TEXT, queue.batches()[0].batch.batch_id).click()
                for done in range(LABELLED + 1):
                    WebDriverWait(browser, 10).until(
                        lambda b, n=done: f"{n} of {BATCH} labelled" in b.page_source
                        and b.find_elements(By.CSS_SELECTOR, "html.keys"))
                    if done < LABELLED:
                        ActionChains(browser).send_keys(str(done % 2 + 1)).perform()
                ActionChains(browser).send_keys("t", "the 2022 Forrester audit is not in the context",
                                                Keys.ESCAPE).perform()
                out.parent.mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(out))
        finally:
            browser.quit()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
