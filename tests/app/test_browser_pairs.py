"""The page's "Compare with another pair" in Debian's chromium: two pairs' maps side by side, or a refusal.

Run: python -m pytest -m browser tests/app/test_browser_pairs.py -s (the demo-pair test is also `real`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DIVERSITY_PLOT, REPO, free_port
from tiny_pairs import make_pair

from slr_core.cache import cache_root

pytestmark = pytest.mark.browser
USER_CACHE = cache_root()  # read before the autouse fixture isolates the test: the demo snapshot lives there
SHIPPED = REPO / "assets" / "landscapes"


@contextlib.contextmanager
def app_on(root: Path, pre: str, post: str, cache: Path):
    """`python app.py` on the given pair; yields its URL, then stops it."""
    port = free_port()
    env = {**os.environ, "SLR_CACHE_DIR": str(cache), "SLR_EXPORT_DIR": str(root / "exports")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    log_path = root / "app.log"
    command = [sys.executable, "app.py", "--pre", pre, "--post", post, "--port", str(port), "--device", "cpu"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url, began = f"http://127.0.0.1:{port}/", time.monotonic()
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() - began > 240:
                    pytest.fail(f"the app did not start in 240 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium under Playwright."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_comparison(browser, url: str, second_label: str):
    """A fresh page: wait for the maps, open the tab, pick the second pair and press Compare."""
    page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
    page.goto(url)
    page.wait_for_selector(f"{DIVERSITY_PLOT}[data-drawn]", timeout=120_000)
    page.get_by_role("tab", name="Compare pairs").click()
    page.get_by_label("Second pair (a shipped landscape)").click()
    page.get_by_role("option", name=second_label, exact=True).click()
    page.get_by_role("button", name="Compare with this pair").click()
    return page


def test_a_pair_of_another_depth_is_refused_with_a_message(browser, tmp_path):
    pre, post = make_pair(tmp_path / "pair", "llama")  # 4 layers; every shipped landscape has 18
    with app_on(tmp_path, str(pre), str(post), tmp_path / "cache") as url:
        page = open_comparison(
            browser,
            url,
            "Gemma-3-270m base + SLR Explorer's demo instruction tuning (LoRA, synthetic data) (whole layers)",
        )
        page.get_by_text("has 18: landscapes can be compared only on the same interval grid").first.wait_for(
            timeout=30_000
        )
        assert "| pair |" not in page.locator("#slr-pair-picks").inner_text()  # nothing drawn
        assert "rule" not in page.locator("#slr-pair-picks").inner_text()


@pytest.mark.real
@pytest.mark.xfail(
    not (SHIPPED / "demo-dpo.csv").is_file(), reason="demo-dpo.csv is not shipped yet", strict=True
)
def test_demo_sft_beside_demo_dpo_shows_both_maps_the_deltas_and_both_picks(browser, tmp_path):
    from slr_core.report.difference import Difference, picks, read_landscape

    second = read_landscape(SHIPPED / "demo-dpo.csv")
    label = f"{second.meta['pair']} (whole layers)"
    with app_on(tmp_path, "demo:pre", "demo:post", USER_CACHE) as url:
        page = open_comparison(browser, url, label)
        picks_box = page.locator("#slr-pair-picks")
        picks_box.filter(has_text="second pair").wait_for(timeout=60_000)
        page.get_by_text("ΔD: second pair − shown pair").first.wait_for(timeout=30_000)
        page.get_by_text("Pareto fronts of both pairs").first.wait_for(timeout=30_000)
        assert (
            page.locator(".js-plotly-plot").count() >= 10 + 3
        )  # 9 maps and the fronts, beside the explore maps
        first = read_landscape(SHIPPED / "demo.csv")
        text = picks_box.inner_text()
        for name, landscape in (("shown pair", first), ("second pair", second)):
            for rule, best in picks(landscape, 0.9).items():
                assert f"[{best[0]}, {best[1]}]" in text, (name, rule)
        worst = Difference(first, second).largest("diversity", 1)[0][0]
        assert f"[{worst[0]}, {worst[1]}]" in text
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-pair-compare.png"), full_page=True)
