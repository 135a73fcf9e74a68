"""The page's prompt-set picker on a tiny pair: each set's landscape cached apart, a visitor's JSON checked
before any work, and the set named on the maps and beside the references."""

from __future__ import annotations

import json

import gradio as gr
import pytest

import app
from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.cached_sweep import context_id, is_complete, result_count
from slr_core.serve.prompt_choice import UPLOAD, choices
from slr_core.serve.session import SessionView

pytestmark = pytest.mark.usefixtures("page")  # conftest: the page, with the app on the CPU
MINE = [
    {
        "instruction": "Pick a digit from 2 to 6. Do not include anything else in your reply.",
        "valid": "23456",
    },
    {
        "instruction": "Pick a letter from C to F. Do not include anything else in your reply.",
        "valid": "CDEF",
    },
]


@pytest.fixture
def shown(page, tiny_paths) -> SessionView:
    pre, post = tiny_paths("llama")
    view = SessionView()
    page.show_pair(view, str(pre), str(post))
    return view


def upload(tmp_path, items, name: str = "mine.json") -> str:
    path = tmp_path / name
    path.write_text(items if isinstance(items, str) else json.dumps(items), encoding="utf-8")
    return str(path)


def title(update: dict, component) -> str:
    return json.loads(update[component])["layout"]["title"]["text"]


def test_the_picker_lists_both_shipped_sets_and_an_upload(page):
    values = [value for _, value in choices()]
    assert values == ["paper", "open", UPLOAD]
    assert page.prompt_set.value == "paper"
    assert any(fn.name == "change_prompts" for fn in page.demo.fns.values())


def test_each_prompt_set_has_its_own_cached_landscape(page, shown, tmp_path, one_thread):
    paper = shown.landscape
    file = upload(tmp_path, MINE)
    update = page.change_prompts(shown, UPLOAD, file)
    assert shown.prompt_set == "mine.json (2 prompts)" and len(shown.prompts) == 2
    assert result_count(shown.landscape) == 0 and update[page.sweep_token] != gr.skip()
    assert "prompts: mine.json (2 prompts)" in title(update, page.heat_diversity)
    assert "Prompt set: **mine.json (2 prompts)**" in update[page.references]
    for _ in page.run_sweep(shown):
        pass
    assert is_complete(shown.landscape) and shown.landscape.meta["num_prompts"] == 2
    mine = shown.landscape
    # Back to the paper set: its own (still unswept) landscape, not the one just computed.
    page.change_prompts(shown, "paper", file)
    assert shown.prompts is None and result_count(shown.landscape) == result_count(paper)
    assert "prompts:" not in title(page.view_update(shown), page.heat_diversity)
    # The uploaded set again: read back from the cache, complete, so no sweep starts.
    again = page.change_prompts(shown, UPLOAD, file)
    assert is_complete(shown.landscape) and again[page.sweep_token] == gr.skip()
    assert shown.landscape.intervals == mine.intervals
    # Why: the cache context of a landscape covers the encoded prompts' digest.
    pair = app.REGISTRY.get(shown.key, load=False).pair
    ours = encode_prompts(pair.tokenizer, list(shown.prompts))
    assert context_id(pair, ours) != context_id(pair, encode_prompts(pair.tokenizer, default_prompts()))


def test_upload_picked_without_a_file_changes_nothing(page, shown):
    before = (shown.landscape, shown.generation, shown.prompts)
    assert page.change_prompts(shown, UPLOAD, None) == {}
    assert (shown.landscape, shown.generation, shown.prompts) == before


@pytest.fixture(scope="module")
def open_sources(tmp_path_factory) -> tuple[str, str]:
    """A tiny pair whose tokenizer can say every open answer (the default tiny one lacks letters like 'z')."""
    from tiny_pairs import make_pair

    from slr_core.crc.prompt_sets import open_prompts

    corpus = tuple(f"{p.instruction} {' '.join(p.valid)}" for p in open_prompts())
    pre, post = make_pair(tmp_path_factory.mktemp("open"), "llama", tokenizer_vocab=600, extra_corpus=corpus)
    return str(pre), str(post)


def test_open_answers_on_the_page(page, open_sources):
    view = SessionView()
    page.show_pair(view, *open_sources)
    update = page.change_prompts(view, "open", None)
    assert view.prompt_set == "open answers" and len(view.prompts) == 44
    assert "prompts: open answers" in title(update, page.heat_diversity)
    assert "Prompt set: **open answers**" in update[page.references]
    assert result_count(view.landscape) == 0 and update[page.sweep_token] != gr.skip()
    encoded = app.REGISTRY.get(view.key, load=False).encoded_for(view.prompts)
    assert not encoded.is_flat  # answers of several tokens, laid out as tries
