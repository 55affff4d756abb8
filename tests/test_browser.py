"""Browser tests: headless Debian Chromium driven by Playwright clicks through the whole story
on a live service (API + worker + RabbitMQ) with a small sweep of our train.py.
Screenshots of each page go to test-artifacts/screenshots/ (not committed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.e2e_support import ROOT, Stack, VirtualHost

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sample_data.py"), str(folder)],
                   check=True, capture_output=True)
    return folder


@pytest.fixture
def live(tmp_path: Path):
    with VirtualHost() as url:
        stack = Stack(tmp_path / "data", url, threads=2)
        try:
            stack.start_api()
            stack.start_worker()
            yield stack
        finally:
            stack.stop()


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed for the browser tests: "
                    "sudo apt-get install chromium (scripts/setup.sh does it where it may)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()


def api(stack: Stack, path: str) -> dict:
    with urllib.request.urlopen(stack.base + path, timeout=30) as response:
        return json.load(response)


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_whole_loop_in_the_browser(live, page, sample):
    base = live.base
    # Create a model
    page.goto(base + "/")
    shot(page, "1-models-empty")
    page.get_by_label("Name").fill("digits")
    page.get_by_role("button", name="Create model").click()
    page.wait_for_url(f"{base}/models/1*")
    # Upload the archive, with the progress bar
    page.set_input_files("#images", str(sample / "train.zip"))
    page.get_by_role("button", name="Upload").click()
    page.wait_for_function("document.getElementById('image-count')?.textContent === '1777'",
                           timeout=60_000)
    shot(page, "2-model-with-images")
    # Start a small sweep
    page.fill("#grid-i", "0.01, 0.1")
    page.fill("#grid-j", "1")
    page.fill("#grid-k", "100, 300")
    page.get_by_role("button", name="Start sweep").click()
    page.wait_for_url(f"{base}/experiments/1*")
    # Watch it finish without reloading the page
    page.evaluate("window.__notReloaded = true")
    shot(page, "3-experiment-running")
    page.wait_for_function(
        "document.getElementById('experiment-status')?.textContent === 'completed'",
        timeout=180_000)
    assert page.evaluate("window.__notReloaded") is True
    shot(page, "4-experiment-completed")
    # The heatmap cells show the API's accuracies, the best one marked
    experiment = api(live, "/api/v1/experiments/1")
    cells = page.eval_on_selector_all(
        "g.cell", "cells => cells.map(c => [c.dataset.runId, c.dataset.best || '',"
                  " c.querySelector('text').textContent.trim()])")
    expected = {str(r["id"]): f"{r['accuracy']:.3f}" for r in experiment["runs"]}
    assert {run_id: text.replace(" ★", "") for run_id, _, text in cells} == expected
    assert [run_id for run_id, best, _ in cells if best] == [str(experiment["best"]["run_id"])]
    # Open a run's log
    page.click(f"table.runs a[href='/runs/{experiment['best']['run_id']}']")
    page.wait_for_url(f"{base}/runs/*")
    assert "accuracy" in page.text_content("#log")
    shot(page, "5-run")
    # Predict a held-out image
    page.goto(f"{base}/models/1")
    image = sorted((sample / "heldout").glob("7_*.png"))[0]
    page.set_input_files("#predict-image", str(image))
    page.get_by_role("button", name="Predict").click()
    page.wait_for_selector("#predicted-label")
    assert page.text_content("#predicted-label") == "7"
    assert page.is_visible("img.preview")
    shot(page, "6-prediction")


def test_the_pages_on_a_phone(live, page):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live.base + "/")
    shot(page, "7-phone-models")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways on a phone"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
