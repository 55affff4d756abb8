"""Browser tests: headless Debian Chromium driven by Playwright clicks through the whole story
on a live service (API + worker + RabbitMQ) with a small sweep of our train.py.
Screenshots of each page go to test-artifacts/screenshots/ (not committed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.e2e_support import (
    FAKE_SCRIPTS,
    HOPELESS_GRID,
    ROOT,
    Stack,
    VirtualHost,
    small_dataset,
)

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
    page.fill("#sweep-param-values-0", "0.01, 0.1")
    page.fill("#sweep-param-values-1", "1")
    page.fill("#sweep-param-values-2", "100, 300")
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


# A 200-character model name with nothing to break it at, and a training script whose
# accuracies sit near 1 with long decimals: the widest bars and numbers the pages can get.
LONG_NAME = ("digits_mlp_" * 19)[:200]
NEAR_ONE_TRAIN = """import sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
print({"accuracy": min(1.0, 0.96 + 0.01 * int(args["--j"]) + 0.0000123 * int(args["--k"]))})
"""
# Boxes of what a row of the marginal-effect tables draws: the bar, then the first text of the
# mean and best cells (a Range around the text, so it holds whatever the cell's markup is).
EFFECT_BOXES = """rows => rows.map(row => {
  const box = r => ({left: r.left, right: r.right, top: r.top, bottom: r.bottom});
  const text = cell => {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.textContent.trim()) {
        const range = document.createRange();
        range.selectNodeContents(node);
        return [node.textContent.trim(), box(range.getBoundingClientRect())];
      }
    }
    return ["", null];
  };
  const [mean, best] = row.querySelectorAll("td");
  return {bar: box(mean.querySelector(".bar").getBoundingClientRect()),
          mean: text(mean), best: text(best)};
})"""


@pytest.fixture(scope="module")
def long_named_sweep(tmp_path_factory: pytest.TempPathFactory):
    """A live stack with one model named LONG_NAME whose default sweep has completed."""
    folder = tmp_path_factory.mktemp("long-name")
    script = folder / "near_one_train.py"
    script.write_text(NEAR_ONE_TRAIN)
    with VirtualHost() as url:
        stack = Stack(folder / "data", url, threads=4, SWEEPLAB_TRAIN_SCRIPT=str(script))
        try:
            stack.start_api()
            stack.start_worker()
            yield stack, _sweep_of_a_long_named_model(stack)
        finally:
            stack.stop()


def _sweep_of_a_long_named_model(stack: Stack) -> dict:
    model_id = small_dataset(stack, LONG_NAME)
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments", {})
    assert status == 201 and len(created["runs"]) == 27, created  # the default grid
    done = stack.wait_for_experiment(created["id"], timeout=120)
    assert done["status"] == "completed", done["counts"]
    return done


def overlaps(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] \
        and b["top"] < a["bottom"]


@pytest.mark.parametrize("width", [1400, 400])
def test_effect_bars_never_cover_their_numbers(long_named_sweep, page, width):
    # Given a finished default sweep whose means are close to 1 (the widest bars)
    stack, experiment = long_named_sweep
    # When the experiment page is seen at this width
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{stack.base}/experiments/{experiment['id']}")
    shot(page, f"8-effects-{width}")
    rows = page.eval_on_selector_all("table.effect tbody tr", EFFECT_BOXES)
    # Then each row's bar, mean and best are apart, the bar before the mean, both rounded
    assert len(rows) == 9
    for row in rows:
        (mean_text, mean), (best_text, best) = row["mean"], row["best"]
        assert re.fullmatch(r"\d\.\d{3}", mean_text) and re.fullmatch(r"\d\.\d{3}", best_text)
        assert not overlaps(row["bar"], mean), (width, row)
        assert not overlaps(row["bar"], best), (width, row)
        assert not overlaps(mean, best), (width, row)
        assert row["bar"]["right"] <= mean["left"], (width, row)


# Where each element is across, and whether its content is wider than itself.
SPANS = """elements => elements.map(e => {
  const r = e.getBoundingClientRect();
  return {what: e.tagName + " " + e.textContent.trim().slice(0, 24), left: r.left,
          right: r.right, width: r.width, spills: e.scrollWidth > e.clientWidth + 1};
})"""


def assert_inside_the_viewport(page, selector: str) -> list[dict]:
    width = page.evaluate("window.innerWidth")
    spans = page.eval_on_selector_all(selector, SPANS)
    assert spans, selector
    for span in spans:
        assert 0 <= span["left"] and span["right"] <= width and span["width"] > 0, (width, span)
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), \
        f"{page.url} scrolls sideways at {width} px"
    return spans


@pytest.mark.parametrize("width", [390, 1400])
def test_a_long_model_name_stays_inside_the_page(long_named_sweep, page, width):
    # Given a model whose name is 200 characters with nowhere to break
    stack, experiment = long_named_sweep
    model_id, run_id = experiment["model_id"], experiment["best"]["run_id"]
    page.set_viewport_size({"width": width, "height": 900})
    # When the model list is shown, then every column of the model's row stays in view
    page.goto(stack.base + "/")
    shot(page, f"9-long-name-models-{width}")
    row = f"main table tr:has(a[href='/models/{model_id}'])"
    assert len(assert_inside_the_viewport(page, f"{row} > td")) == 5
    assert page.get_attribute(f"{row} a", "title") == LONG_NAME
    # And on the model's, the experiment's and the run's pages the title and the breadcrumb fit
    for path in (f"/models/{model_id}", f"/experiments/{experiment['id']}", f"/runs/{run_id}"):
        page.goto(stack.base + path)
        shot(page, f"9-long-name{path.replace('/', '-')}-{width}")
        spans = assert_inside_the_viewport(page, "main h1, header.top nav, header.top nav > *")
        assert not [span for span in spans if span["what"].startswith("H1") and span["spills"]]
        crumb = page.locator("header.top nav .crumb")
        assert crumb.get_attribute("title") == LONG_NAME
        assert crumb.text_content() == LONG_NAME


def test_the_overlay_of_learning_curves_greys_pruned_runs(make_stack, page):
    from service.web.dashboard.charts import STYLES

    # Given a finished sweep whose hopeless configurations (j=1) were pruned on their curves
    stack = make_stack(threads=2, FAKE_TRAIN_MODE="hopeless", FAKE_TRAIN_SLEEP="0.3",
                       **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                    {"grid": HOPELESS_GRID, "reuse": False, "early_stopping": {
                                        "rule": "successive_halving", "min_step": 100}})
    assert status == 201, created
    done = stack.wait_for_experiment(created["id"])
    pruned = {str(run["id"]) for run in done["runs"] if run["status"] == "pruned"}
    assert pruned, done["counts"]
    # When its page is seen
    page.goto(f"{stack.base}/experiments/{done['id']}")
    shot(page, "10-learning-curves")
    lines = page.eval_on_selector_all(
        "[data-chart=overlay] polyline", "lines => lines.map(l => [l.dataset.runId,"
        " l.getAttribute('class'), getComputedStyle(l).stroke, getComputedStyle(l).strokeWidth])")
    # Then the best run's curve is the one thick accent line, drawn last, over the others
    assert lines[-1][:2] == [str(done["best"]["run_id"]), "curve best"]
    assert [line for line in lines if line[1] == "curve best"] == [lines[-1]]
    assert lines[-1][2:] == ["rgb(11, 92, 173)", "3px"]
    # And every pruned run's curve is thin and light grey
    greyed = {run_id: (stroke, width) for run_id, kind, stroke, width in lines
              if kind == "curve pruned"}
    assert set(greyed) == pruned
    assert set(greyed.values()) == {("rgb(175, 184, 193)", "1px")}
    assert STYLES["pruned"].colour == "#afb8c1"
    assert page.is_visible("text=pruned (stopped early)")


LEGEND_LABELS = """svg => {
  const box = svg.getBoundingClientRect();
  return [...svg.querySelectorAll("text")].map(text => {
    const r = text.getBoundingClientRect();
    return [text.textContent, box.left <= r.left && r.right <= box.right];
  });
}"""


def test_a_loss_sweep_from_the_form_reads_whole_on_a_phone(make_stack, page):
    # Given a live service whose script prints a loss (10 x i), and a model with images
    stack = make_stack(threads=2, FAKE_TRAIN_MODE="loss", **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    page.set_viewport_size({"width": 400, "height": 900})
    page.goto(f"{stack.base}/models/{model_id}")
    # When a random search is chosen its fields appear, and go again with the grid
    assert page.is_hidden("#sweep-runs") and page.is_hidden("input[name=param_log_0]")
    page.select_option("#sweep-strategy", "random")
    assert page.is_visible("#sweep-runs") and page.is_visible("#sweep-seed")
    assert page.is_hidden("#sweep-parallel")
    page.select_option("#sweep-strategy", "grid")
    assert page.is_hidden("#sweep-runs")
    # And "Add a parameter" adds a seventh, empty row, its log box following the strategy
    page.get_by_role("button", name="Add a parameter").click()
    assert page.input_value("#sweep-param-name-6") == ""
    assert page.is_hidden("input[name=param_log_6]")
    assert page.evaluate("document.activeElement.name") == "param_name_6"
    # And a metric other than the accuracy asks for its direction before the form goes
    page.fill("#sweep-metric", "loss")
    page.fill("#sweep-param-values-0", "0.0123456, 0.0050561")
    page.fill("#sweep-param-values-1", "1")
    page.fill("#sweep-param-values-2", "5")
    assert page.input_value("#sweep-direction") == ""
    assert page.evaluate("document.getElementById('sweep-form').checkValidity()") is False
    page.select_option("#sweep-direction", "minimize")
    page.get_by_role("button", name="Start sweep").click()
    page.wait_for_url(f"{stack.base}/experiments/*")
    page.wait_for_function(
        "document.getElementById('experiment-status')?.textContent === 'completed'",
        timeout=120_000)
    shot(page, "11-loss-sweep-phone")
    experiment_id = int(re.search(r"/experiments/(\d+)", page.url).group(1))
    experiment = api(stack, f"/api/v1/experiments/{experiment_id}")
    assert experiment["objective"] == {"metric": "loss", "direction": "minimize"}
    assert len(experiment["runs"]) == 2
    # Then the colour legend's labels are whole, inside its picture (the worst was clipped)
    labels = page.eval_on_selector("svg.legend", LEGEND_LABELS)
    assert labels == [["0.1235", True], ["0.08701", True], ["0.05056", True],
                      ["better →", True], ["failed", True]]
    # And every value of the runs table is in view: none behind the table's scroll bar
    assert_inside_the_viewport(page, "table.runs tbody td:not(:empty)")
    assert page.evaluate("[...document.querySelectorAll('.scroll')].every("
                         "s => s.scrollWidth <= s.clientWidth)")
