"""The real page in Debian's chromium: the heatmap draws, a mouse click on a cell samples that hybrid.

Launches `python app.py` on a tiny random pair (own cache and export folders), drives it with
Playwright, saves screenshots and timings to ./artifacts/. Run: python -m pytest -m browser -s
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tiny_pairs import make_pair

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
QUALITY_PLOT = "#heatmap-quality .slr-heatmap-plot"
DIVERSITY_PLOT = "#heatmap-diversity .slr-heatmap-plot"
STOP_PLOT = "#heatmap-stop .slr-heatmap-plot"
# Page position of cell [start, end] from the plot's own axes (data -> pixel, plus the plot's offsets).
CELL_POSITION = """([selector, start, end]) => {
  const plot = document.querySelector(selector);
  const xaxis = plot._fullLayout.xaxis, yaxis = plot._fullLayout.yaxis;
  const box = plot.getBoundingClientRect();
  return {x: box.left + xaxis._offset + xaxis.d2p(end), y: box.top + yaxis._offset + yaxis.d2p(start)};
}"""
SELECTED_SHAPE = """([selector, start, end]) => {
  const shapes = (document.querySelector(selector).layout || {}).shapes || [];
  return shapes.some(s => s.x0 === end - 0.5 && s.y0 === start - 0.5);
}"""
TIMINGS: dict[str, float] = {}


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_app(
    root: Path, extra_env: dict | None = None, log_name: str = "browser-app.log", demo: bool = False
):
    """`python app.py` on a tiny Llama pair, or the default demo pair (own cache and export folders);
    yields its URL, then stops it."""
    port = free_port()
    env = {
        **os.environ,
        "SLR_CACHE_DIR": str(root / "cache"),
        "SLR_EXPORT_DIR": str(root / "exports"),
        "HF_ENDPOINT": "http://127.0.0.1:9",  # no hub, even on a machine that has internet
        **(extra_env or {}),
    }
    log_path = root / "app.log"
    command = [sys.executable, "app.py", "--port", str(port), "--device", "cpu"]
    if not demo:
        pre, post = make_pair(root / "pair", "llama")
        command += ["--pre", str(pre), "--post", str(post)]
    began = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() - began > 300:  # a busy shared CPU: imports alone can take minutes
                    pytest.fail(f"the app did not start in 300 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        TIMINGS.setdefault("app start (s)", round(time.monotonic() - began, 1))
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / log_name).write_text(log_path.read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """The app serving a tiny Llama pair; yields its URL and stops it afterwards."""
    with running_app(tmp_path_factory.mktemp("browser")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium under Playwright (Playwright's own browser download is not used)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    """A fresh visitor's page, loaded."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    opened = context.new_page()
    began = time.monotonic()
    opened.goto(server)
    opened.wait_for_selector(f"{QUALITY_PLOT}[data-drawn]", timeout=60_000)
    opened.wait_for_selector(f"{DIVERSITY_PLOT}[data-drawn]", timeout=60_000)
    opened.wait_for_selector(f"{STOP_PLOT}[data-drawn]", timeout=60_000)
    TIMINGS.setdefault("first paint of the heatmaps (s)", round(time.monotonic() - began, 2))
    yield opened
    context.close()


def wait_for_full_landscape(page) -> None:
    """The three maps show all 10 intervals of the 4-layer pair (swept live, or from the cache)."""
    for plot in (QUALITY_PLOT, DIVERSITY_PLOT, STOP_PLOT):
        page.wait_for_function(f"document.querySelector('{plot}').dataset.filled === '10'", timeout=90_000)


def click_cell(page, plot: str, start: int, end: int) -> None:
    """A real mouse click in the middle of cell [start, end], scrolled into view first as a user would."""
    page.locator(plot).scroll_into_view_if_needed()
    position = page.evaluate(CELL_POSITION, [plot, start, end])
    page.mouse.click(position["x"], position["y"])


def test_bad_sources_show_clear_errors_and_keep_the_running_sweep(page):
    # The server is fresh, so this page's load started a sweep; a bad source must not stop it.
    page.get_by_text("Model pair").first.click()
    pre_box = page.get_by_label("Pre-trained model (hub id, folder or .gguf)")
    pre_box.wait_for(state="visible", timeout=10_000)
    pre_box.fill("/no/such/model")
    page.get_by_role("button", name="Load pair").click()
    page.get_by_text("Model folder not found").first.wait_for(timeout=60_000)
    assert page.locator(f"{QUALITY_PLOT}[data-drawn]").count() == 1  # the shown landscape stays
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-error.png"), full_page=True)
    wait_for_full_landscape(page)
    status = page.locator("#slr-sweep-status")
    status.filter(has_text="complete").wait_for(timeout=90_000)

    click_cell(page, QUALITY_PLOT, 3, 1)  # below the diagonal: no interval there
    page.wait_for_timeout(1500)
    assert page.locator("#slr-compare-header").inner_text().strip() == ""
    assert not page.evaluate(SELECTED_SHAPE, [QUALITY_PLOT, 3, 1])

    page.get_by_label("Preset").click()
    page.get_by_role("option", name="Gemma-3-270m", exact=True).click()
    page.wait_for_function("box => box.value === 'google/gemma-3-270m'", arg=pre_box.element_handle())
    began = time.monotonic()
    page.get_by_role("button", name="Load pair").click()
    page.get_by_text("presets need internet access").first.wait_for(timeout=30_000)
    assert time.monotonic() - began < 15  # the hub check fails fast instead of retrying for a minute
    assert page.locator(DIVERSITY_PLOT).evaluate("plot => plot.dataset.filled") == "10"


def test_clicking_a_cell_samples_both_models_for_that_interval(page):
    ARTIFACTS.mkdir(exist_ok=True)
    wait_for_full_landscape(page)
    page.screenshot(path=str(ARTIFACTS / "browser-landscape.png"), full_page=True)

    references = page.locator("#slr-references")
    summary = page.locator("#slr-summary").inner_text()
    strict = "not computed" not in summary  # the sweep computed the strict numbers
    # The rule selector redraws the maps and references under the other rule.
    page.get_by_label("paper: first token").check()
    references.filter(has_text="paper rule: q_min").wait_for(timeout=20_000)
    page.get_by_text("vs diversity of every interval (paper rule)").wait_for(timeout=20_000)
    if strict:  # the strict numbers are computed: switch back to the default rule
        page.get_by_label("strict: valid answer, then the reply ends").check()
        references.filter(has_text="strict rule: q_min").wait_for(timeout=20_000)
    TIMINGS["strict rule shown"] = strict

    began = time.monotonic()
    click_cell(page, DIVERSITY_PLOT, 1, 3)
    for plot in (QUALITY_PLOT, DIVERSITY_PLOT, STOP_PLOT):  # every map redraws with the clicked cell outlined
        page.wait_for_function(SELECTED_SHAPE, arg=[plot, 1, 3], timeout=20_000)
    TIMINGS["click to selection drawn (s)"] = round(time.monotonic() - began, 2)
    header = page.locator("#slr-compare-header")
    header.filter(has_text="Interval [1, 3]").wait_for(timeout=30_000)
    TIMINGS["click to compare header (s)"] = round(time.monotonic() - began, 2)
    page.wait_for_function(
        "[...document.querySelectorAll('.slr-badge')].filter(b => b.innerText.startsWith('done')).length >= 2",
        timeout=90_000,
    )
    TIMINGS["click to both columns sampled (s)"] = round(time.monotonic() - began, 2)

    assert "seed 0" in header.inner_text() and "8 samples per model" in header.inner_text()
    columns = page.locator(".slr-samples")
    post_column = columns.filter(has_text="Post-trained")
    hybrid_column = columns.filter(has_text="SLR hybrid [1, 3]")
    assert post_column.locator("li").count() == 8
    assert hybrid_column.locator("li").count() == 8
    assert page.get_by_text("distinct-2").count() >= 2
    assert page.locator("input[aria-label='start i']").input_value() == "1"
    page.screenshot(path=str(ARTIFACTS / "browser-compare.png"), full_page=True)
    (ARTIFACTS / "browser-timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
    print(json.dumps(TIMINGS, indent=2))


def test_hosted_mode_refuses_a_local_path_and_keeps_the_maps(browser, tmp_path):
    """SLR_HOSTED=1 python app.py: a visitor who types /etc is told hosted mode refuses it; the maps stay."""
    with running_app(tmp_path, {"SLR_HOSTED": "1"}, "browser-hosted-app.log") as url:
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector(f"{DIVERSITY_PLOT}[data-drawn]", timeout=60_000)
        wait_for_full_landscape(page)
        page.get_by_text("Model pair").first.click()
        page.get_by_label("Pre-trained model (hub id, folder or .gguf)").fill("/etc")
        page.get_by_label("Post-trained model").fill("/etc")
        page.get_by_role("button", name="Load pair").click()
        page.get_by_text("Hosted mode does not load local files").first.wait_for(timeout=60_000)
        assert page.locator(DIVERSITY_PLOT).evaluate("plot => plot.dataset.filled") == "10"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-hosted-refusal.png"))
        context.close()
