"""The page's prompt-set picker in Debian's chromium: picking "open answers" on a tiny pair shows that set's
landscape, named on the maps and beside the references.

Run: python -m pytest -m browser tests/app/test_browser_prompt_sets.py -s
"""

from __future__ import annotations

import pytest
from test_browser import DIVERSITY_PLOT
from test_browser_pairs import app_on, browser  # noqa: F401 (a fixture)
from tiny_pairs import make_pair

from slr_core.crc.prompt_sets import SET_LABELS, open_prompts

pytestmark = pytest.mark.browser


def test_picking_open_answers_shows_that_sets_landscape(browser, tmp_path):  # noqa: F811
    # A tiny tokenizer that can say every open answer (the default one lacks letters such as 'z').
    corpus = tuple(f"{p.instruction} {' '.join(p.valid)}" for p in open_prompts())
    pre, post = make_pair(tmp_path / "pair", "llama", tokenizer_vocab=600, extra_corpus=corpus)
    with app_on(tmp_path, str(pre), str(post), tmp_path / "cache") as url:
        page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
        page.goto(url)
        page.wait_for_selector(f"{DIVERSITY_PLOT}[data-drawn]", timeout=120_000)
        assert "prompts:" not in page.locator("#heatmap-diversity .gtitle").text_content()  # paper
        page.get_by_label("Prompt set").click()
        page.get_by_role("option", name=SET_LABELS["open"], exact=True).click()
        title = page.locator("#heatmap-diversity .gtitle", has_text="prompts: open answers")
        title.wait_for(timeout=120_000)
        references = page.locator("#slr-references", has_text="Prompt set: open answers")
        references.wait_for(timeout=30_000)
        assert "error" not in page.locator("#slr-sweep-status").inner_text().lower()
