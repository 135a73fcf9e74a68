"""The app's backend on tiny random pairs: drift, landscape handlers, rules, selection, sampling, export.

Handlers are methods of app.Page and return {component: value}; every test checks the keys against the
outputs the page wires to that handler.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from strict_landscapes import PAPER_PICK, STRICT_PICK, paper_only_landscape, two_rule_landscape

import app
from slr_core.crc.prompts import default_prompts, encode_prompts, valid_answers
from slr_core.downstream.sampling import SamplingSettings, sample, sample_replies, stream_samples
from slr_core.engine.cached_sweep import complete, is_complete, result_count, stored_landscape, survey
from slr_core.export.writer import export_name
from slr_core.models.architectures import decoder_layers
from slr_core.models.sources import check_reachable, parse_source
from slr_core.serve import session
from slr_core.serve.registry import FairLock, PairRegistry
from slr_core.serve.session import SessionView, snapshot
from slr_core.slr.drift import layer_drift
from slr_core.slr.hybrid import build_hybrid, interval_restoration
from slr_core.slr.landscape import Landscape

CRC_PROMPT = "Generate a random integer in the range [2, 6]. Do not include anything else in your reply."
SKIP = gr.skip()


pytestmark = pytest.mark.usefixtures("page")  # conftest: the page, with the app on the CPU


@pytest.fixture
def sources(tiny_paths) -> tuple[str, str]:
    """The tiny Llama pair's folders as the page would send them."""
    pre, post = tiny_paths("llama")
    return str(pre), str(post)


@pytest.fixture(scope="module")
def swept_landscape(page, tiny_paths, tmp_path_factory) -> Landscape:
    """The tiny pair's full landscape, swept once through the page's own handlers."""
    pre, post = tiny_paths("llama")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLR_CACHE_DIR", str(tmp_path_factory.mktemp("swept-cache")))
        view = SessionView()
        page.show_pair(view, str(pre), str(post))
        for _ in page.run_sweep(view):
            pass
    assert is_complete(view.landscape)
    return view.landscape


@pytest.fixture
def swept_view(sources, swept_landscape) -> SessionView:
    """A session showing the tiny pair with its complete (swept) landscape."""
    return SessionView(key=(*sources, app.SETTINGS), landscape=snapshot(swept_landscape))


@pytest.fixture
def rule_view(sources) -> SessionView:
    """A session showing the tiny pair with a hand-made landscape where the two rules disagree."""
    return SessionView(key=(*sources, app.SETTINGS), landscape=two_rule_landscape())


def wired(page: app.Page, name: str, update: dict) -> dict:
    """`update` after checking it is {component: value} with only outputs wired to handler `name`."""
    assert isinstance(update, dict)
    fns = [fn for fn in page.demo.fns.values() if fn.name == name]
    assert fns, f"no event runs {name}"
    for fn in fns:
        outputs = {block._id for block in fn.outputs}
        assert {component._id for component in update} <= outputs, f"{name} returned an unwired component"
    return update


def figure(update: dict, component) -> dict:
    """A heatmap's figure from its JSON value."""
    return json.loads(update[component])


def heat_z(update: dict, component) -> np.ndarray:
    """The z matrix a heatmap update draws (plotly >= 6 writes arrays base64-encoded; None is NaN)."""
    z = figure(update, component)["data"][0]["z"]
    if isinstance(z, dict):
        values = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"]))
        return values.reshape([int(size) for size in str(z["shape"]).split(",")]).astype(float)
    return np.array([[np.nan if v is None else v for v in row] for row in z], dtype=float)


def star(update: dict, component) -> tuple[int, int] | None:
    """The interval the heatmap's best-star marks, or None."""
    stars = [t for t in figure(update, component)["data"] if t.get("name", "").startswith("best")]
    return (stars[0]["y"][0], stars[0]["x"][0]) if stars else None


def list_items(fragment: str) -> list[str]:
    """The sample texts of one rendered column, unescaped."""
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", fragment, flags=re.S)]


# ---------------------------------------------------------------- drift


def test_layer_drift_is_the_relative_frobenius_norm_per_layer(tiny_pair):
    drifts = layer_drift(tiny_pair)
    assert len(drifts) == tiny_pair.num_layers
    pre_layer, post_layer = decoder_layers(tiny_pair.pre)[2], decoder_layers(tiny_pair.post)[2]
    pre_flat = torch.cat([p.detach().double().flatten() for p in pre_layer.parameters()])
    post_flat = torch.cat([p.detach().double().flatten() for p in post_layer.parameters()])
    expected = float((post_flat - pre_flat).norm() / pre_flat.norm())
    assert drifts[2] == pytest.approx(expected, rel=1e-9)
    assert all(drift > 0.05 for drift in drifts)  # make_pair moves every decoder layer
    assert layer_drift(replace(tiny_pair, pre=tiny_pair.post)) == [0.0] * tiny_pair.num_layers


# ---------------------------------------------------------------- landscape


def test_stored_landscape_reads_exactly_what_a_survey_stored(sources):
    entry = app.REGISTRY.get((*sources, app.SETTINGS))
    assert result_count(stored_landscape(entry.pair, entry.encoded)) == 0
    swept = complete(survey(entry.pair, entry.encoded, soup=True))
    cached = stored_landscape(entry.pair, entry.encoded)
    assert (cached.post, cached.pre) == (swept.post, swept.pre)
    assert cached.intervals == swept.intervals
    assert cached.soup == swept.soup
    assert is_complete(cached)


def test_stored_landscape_also_reads_a_landscape_shipped_in_assets(sources, tmp_path, monkeypatch):
    from slr_core.engine import cached_sweep as survey_module
    from slr_core.export.writer import write_csv

    entry = app.REGISTRY.get((*sources, app.SETTINGS))
    swept = complete(survey(entry.pair, entry.encoded, soup=True, use_cache=False))
    write_csv(swept, tmp_path / "shipped" / "tiny.csv")
    monkeypatch.setattr(survey_module, "SHIPPED_DIR", tmp_path / "shipped")
    shipped = stored_landscape(entry.pair, entry.encoded)  # the cache is empty: everything comes from the CSV
    assert is_complete(shipped)
    assert shipped.intervals[(0, 3)].quality == pytest.approx(swept.intervals[(0, 3)].quality, abs=1e-6)


def test_a_sweep_fills_the_maps_live_and_a_second_visit_reads_the_cache(
    page, sources, tiny_pair, monkeypatch
):
    monkeypatch.setattr(app, "UPDATE_SECONDS", 0.0)  # draw every step, so the first look is seen
    view = SessionView()
    shown = wired(page, "show_pair", page.show_pair(view, *sources))
    assert shown[page.sweep_token] != SKIP  # nothing cached yet: the page asks for a sweep
    assert "Waiting to sweep" in shown[page.sweep_status]
    assert (shown[page.start], shown[page.end]) == (None, None)  # no interval to suggest before the sweep
    updates = [wired(page, "run_sweep", update) for update in page.run_sweep(view)]
    assert len(updates) >= 2
    # First a complete coarse map (every interval, Q and D on 2 of the 40 prompts), marked as such...
    coarse = [u for u in updates if figure(u, page.heat_quality)["layout"]["meta"]["coarse"] == 10]
    assert (
        coarse
        and "first look on 2 of 40 prompts"
        in figure(coarse[0], page.heat_diversity)["layout"]["title"]["text"]
    )
    assert "First look" in coarse[0][page.sweep_status]
    assert not np.isnan(heat_z(coarse[0], page.heat_diversity)[np.triu_indices(4)]).any()
    # ...then the full set replaces every coarse cell.
    last = updates[-1]
    assert figure(last, page.heat_quality)["layout"]["meta"]["coarse"] == 0
    assert figure(last, page.heat_quality)["layout"]["meta"]["filled"] == 10
    assert "complete" in last[page.sweep_status]
    landscape = view.landscape
    assert "Post-trained" in last[page.references]
    for metric, component in (("diversity", page.heat_diversity), ("stop", page.heat_stop)):
        np.testing.assert_array_equal(heat_z(last, component), landscape.matrix(metric))
    rule = view.shown_rule
    best = landscape.best_interval(landscape.q_min(0.9, rule), rule)
    assert rule == ("strict" if landscape.has_strict else "paper")
    if best is not None:
        assert (last[page.start], last[page.end]) == best  # the boxes suggest the best interval
        assert f"Best SLR [{best[0]}, {best[1]}]" in last[page.references]
        assert f"restored [{best[0]}, {best[1]}]" in last[page.drift].layout.title.text
    else:
        assert "No swept interval reaches q_min" in last[page.references]
    reference = complete(
        survey(tiny_pair, encode_prompts(tiny_pair.tokenizer, default_prompts()), use_cache=False)
    )
    for interval, point in reference.intervals.items():
        assert landscape.intervals[interval].quality == pytest.approx(point.quality, abs=1e-6)
    assert len(landscape.soup) == 21

    again = SessionView()
    shown_again = page.show_pair(again, *sources)
    assert shown_again[page.sweep_token] == SKIP  # everything cached: no sweep event at all
    assert "complete" in shown_again[page.sweep_status]
    assert again.landscape.intervals == landscape.intervals


def test_bad_sources_give_clear_errors_and_keep_the_current_view(page, swept_view, sources, tiny_paths):
    before = (swept_view.key, swept_view.landscape)
    with pytest.raises(gr.Error, match="Model folder not found"):
        page.show_pair(swept_view, "/no/such/model", sources[1])
    other_family = str(tiny_paths("qwen2")[1])
    with pytest.raises(gr.Error, match="Different architectures"):
        page.show_pair(swept_view, sources[0], other_family)
    with pytest.raises(gr.Error, match="Give both"):
        page.show_pair(swept_view, " ", sources[1])
    assert (swept_view.key, swept_view.landscape) == before


def test_an_unreachable_hub_preset_fails_fast_with_an_offline_message(page, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    began = time.monotonic()
    with pytest.raises(gr.Error, match="presets need internet access"):
        page.show_pair(SessionView(), "some-org/some-model-that-is-not-cached", "some-org/other-model")
    assert time.monotonic() - began < 10
    check_reachable(parse_source("demo:post"))  # not a hub source: nothing to check


def test_clicks_select_per_session_intervals(page, rule_view, sources):
    other = SessionView()
    page.show_pair(other, *sources)
    update_a = wired(
        page, "select_cell", page.select_cell(rule_view, gr.SelectData(None, {"index": [0, 2], "value": 0.5}))
    )
    update_b = page.select_cell(other, gr.SelectData(None, {"index": [2, 3], "value": 0.5}))
    assert (rule_view.selected, other.selected) == ((0, 2), (2, 3))
    assert (update_a[page.start], update_a[page.end], update_b[page.start], update_b[page.end]) == (
        0,
        2,
        2,
        3,
    )
    for heatmap in (page.heat_quality, page.heat_diversity, page.heat_stop):  # every map outlines the cell
        shapes = figure(update_a, heatmap)["layout"]["shapes"]
        assert [(s["x0"], s["y0"]) for s in shapes] == [(1.5, -0.5)]  # column j = 2, row i = 0
    assert "Selected [0, 2]" in update_a[page.references]
    assert "restored [0, 2]" in update_a[page.drift].layout.title.text
    with pytest.raises(gr.Error, match="invalid for a 4-layer model"):
        page.select_cell(rule_view, gr.SelectData(None, {"index": [3, 1], "value": 0.5}))
    with pytest.raises(gr.Error, match="type start i and end j"):
        page.select_typed(rule_view, None, 2)
    assert rule_view.selected == (0, 2)
    typed = wired(page, "select_typed", page.select_typed(rule_view, 1, 3))
    assert (typed[page.start], typed[page.end]) == (1, 3) == rule_view.selected
    # No interval typed but layers are: Compare goes on to those layers, the selection stays.
    wired(page, "select_typed", page.select_typed(rule_view, None, None, "0,2"))
    assert rule_view.selected == (1, 3)
    with pytest.raises(gr.Error, match="type start i and end j"):
        page.select_typed(rule_view, None, None, "  ")


# ---------------------------------------------------------------- selection rules


def test_the_marked_best_follows_the_rule(page, rule_view):
    strict = wired(page, "change_view", page.change_view(rule_view, 0.9, "strict", "strict_quality"))
    for heatmap in (page.heat_quality, page.heat_diversity, page.heat_stop):
        assert star(strict, heatmap) == STRICT_PICK
    assert (strict[page.start], strict[page.end]) == STRICT_PICK
    assert "**Best SLR [1, 1]** ★" in strict[page.references]
    assert "strict rule: q_min = 0.90 × strict Q_post = **0.648**" in strict[page.references]
    assert "Proxy-Soup α = 0.25" in strict[page.references]
    tradeoff = strict[page.tradeoff]
    assert tradeoff.layout.meta["rule"] == "strict"
    best_trace = next(t for t in tradeoff.data if t.name == "best [1, 1]")
    assert best_trace.y[0] == pytest.approx(rule_view.landscape.intervals[STRICT_PICK].strict_quality)
    assert tradeoff.layout.shapes[0].y0 == pytest.approx(0.648)

    paper = wired(page, "change_view", page.change_view(rule_view, 0.9, "paper", "strict_quality"))
    for heatmap in (page.heat_quality, page.heat_diversity, page.heat_stop):
        assert star(paper, heatmap) == PAPER_PICK
    assert "**Best SLR [0, 1]** ★" in paper[page.references]
    assert "paper rule: q_min = 0.90 × Q_post = **0.720**" in paper[page.references]
    assert paper[page.tradeoff].layout.meta["rule"] == "paper"
    best_trace = next(t for t in paper[page.tradeoff].data if t.name == "best [0, 1]")
    assert best_trace.y[0] == pytest.approx(0.78)  # the first-token Q

    selected = wired(page, "select_best", page.select_best(rule_view))
    assert rule_view.selected == PAPER_PICK == (selected[page.start], selected[page.end])
    page.change_view(rule_view, 0.9, "strict", "strict_quality")
    page.select_best(rule_view)
    assert rule_view.selected == STRICT_PICK


def test_q_min_moves_the_best_interval(page, rule_view):
    update = page.change_view(rule_view, 0.5, "paper", "quality")
    landscape = rule_view.landscape
    best = landscape.best_interval(landscape.q_min(0.5, "paper"), "paper")
    assert best not in (PAPER_PICK, STRICT_PICK)  # at q_min 0.4 the low-Q, high-D intervals qualify
    assert f"Best SLR [{best[0]}, {best[1]}]" in update[page.references]
    assert "q_min = 0.50" in update[page.references]
    page.change_view(rule_view, 1.0, "paper", "quality")
    with pytest.raises(gr.Error, match="lower q_min"):
        page.select_best(rule_view)


def test_the_quality_map_toggles_between_q_and_strict_q_and_the_stop_map_shows_the_stop_rate(page, rule_view):
    landscape = rule_view.landscape
    strict = page.change_view(rule_view, 0.9, "strict", "strict_quality")
    np.testing.assert_allclose(heat_z(strict, page.heat_quality), landscape.matrix("strict_quality"))
    assert figure(strict, page.heat_quality)["layout"]["meta"]["metric"] == "strict_quality"
    first_token = page.change_view(rule_view, 0.9, "strict", "quality")
    np.testing.assert_allclose(heat_z(first_token, page.heat_quality), landscape.matrix("quality"))
    np.testing.assert_allclose(heat_z(first_token, page.heat_stop), landscape.matrix("stop"))
    np.testing.assert_allclose(heat_z(first_token, page.heat_diversity), landscape.matrix("diversity"))
    assert figure(first_token, page.heat_stop)["layout"]["meta"]["metric"] == "stop"
    hover = figure(first_token, page.heat_stop)["data"][0]["text"][1][1]
    for label in ("Q = 0.750", "strict Q = 0.675", "stop = 0.900", "D = 1.000"):
        assert label in hover


def test_the_summary_shows_both_rules_picks_side_by_side(page, rule_view):
    summary = page.change_view(rule_view, 0.9, "strict", "strict_quality")[page.summary]
    rows = {line.split("|")[2].strip(): line for line in summary.splitlines() if line.startswith("| **SLR**")}
    assert set(rows) == {"strict", "paper", "answer"}  # the hand-made landscape has answer D (= D)
    assert "[1, 1]" in rows["strict"] and "[0, 1]" in rows["paper"] and "[1, 1]" in rows["answer"]
    for cell in ("0.750", "0.675", "0.900", "1.000"):  # Q, strict Q, stop, D of the strict pick
        assert cell in rows["strict"]
    assert "| model | rule | q_min | interval / α | Q | strict Q | stop | D | answer D |" in summary
    assert "SLR-Early" not in summary  # the page leaves the controls to the model card and CLI


def test_a_landscape_without_strict_numbers_shows_the_paper_rule_and_says_so(page, sources):
    view = SessionView(key=(*sources, app.SETTINGS), landscape=paper_only_landscape())
    update = page.change_view(view, 0.9, "strict", "strict_quality")  # the visitor's choice stays strict
    assert view.rule == "strict" and view.shown_rule == "paper"
    assert star(update, page.heat_quality) == PAPER_PICK
    assert figure(update, page.heat_quality)["layout"]["meta"]["metric"] == "quality"
    stop_map = figure(update, page.heat_stop)
    assert "not computed" in stop_map["layout"]["title"]["text"]
    assert np.isnan(heat_z(update, page.heat_stop)).all()
    assert "not computed" in update[page.references] and "not computed" in update[page.summary]
    assert "| strict Q |" not in update[page.summary] and "| strict |" not in update[page.summary]
    assert update[page.tradeoff].layout.meta["rule"] == "paper"
    view.landscape = two_rule_landscape()  # once the strict numbers exist, the choice applies again
    assert star(page.change_view(view, 0.9, "strict", "strict_quality"), page.heat_quality) == STRICT_PICK


# ---------------------------------------------------------------- sampling


def test_compare_streams_the_post_model_and_the_hybrid_reproducibly(page, swept_view, monkeypatch):
    monkeypatch.setattr(app, "STREAM_SECONDS", 0.0)
    swept_view.selected = (1, 2)
    updates = [
        wired(page, "compare", u) for u in page.compare(swept_view, CRC_PROMPT, 4, 0.1, 1.0, 10, 7, False)
    ]
    assert len(updates) > 4  # the columns were redrawn while tokens came in
    post_html, post_stats, post_histogram = page.columns["post"]
    hybrid_html, hybrid_stats, hybrid_histogram = page.columns["hybrid"]
    final = {key: value for update in updates for key, value in update.items()}  # what the page ends with
    header = final[page.compare_info]
    assert "Interval [1, 2]" in header and "seed **7**" in header and "4 samples" in header
    settings = SamplingSettings(4, 0.1, 1.0, 10, 7)
    pair = app.REGISTRY.get(swept_view.key).pair
    assert list_items(final[post_html]) == sample(pair.post, pair.tokenizer, CRC_PROMPT, settings)
    hybrid_replies = sample_replies(build_hybrid(pair, 1, 2), pair.tokenizer, CRC_PROMPT, settings)
    assert list_items(final[hybrid_html]) == hybrid_replies.texts
    assert "SLR hybrid [1, 2]" in final[hybrid_html] and "done in" in final[hybrid_html]
    # Beside the samples: how many ended by themselves and their mean length, as sampled naively.
    ended, tokens = sum(hybrid_replies.ended), hybrid_replies.mean_tokens
    assert f"{ended} / 4 ended by themselves · mean {tokens:.1f} tokens" in final[hybrid_html]
    assert f"| ended by themselves | {'**' * (ended < 2)}{ended} / 4" in final[hybrid_stats]
    assert f"| mean length (tokens) | {tokens:.3f} |" in final[hybrid_stats]
    for statistics in (final[post_stats], final[hybrid_stats]):
        assert "distinct-1" in statistics and "embedding dissimilarity" in statistics
    assert final[post_histogram]["visible"] is True and final[hybrid_histogram]["visible"] is True
    assert not set(page.columns["pre"]) & set(final)  # the pre-trained column was not asked for
    assert any("sampling…" in update.get(hybrid_html, "") for update in updates), "no partial hybrid samples"


def test_compare_can_add_the_pre_trained_model(page, swept_view):
    swept_view.selected = (0, 3)
    updates = list(page.compare(swept_view, "Tell me a joke.", 2, 0.1, 1.0, 6, 0, True))
    final = {key: value for update in updates for key, value in update.items()}
    pre_html, pre_stats, pre_histogram = page.columns["pre"]
    assert "Pre-trained" in final[pre_html] and len(list_items(final[pre_html])) == 2
    assert "distinct answers" in final[pre_stats]
    assert final[pre_histogram]["visible"] is False  # not a CRC-style prompt


def test_compare_rejects_bad_input_clearly(page, swept_view):
    swept_view.selected = None
    with pytest.raises(gr.Error, match="Click a heatmap cell"):
        next(page.compare(swept_view, CRC_PROMPT, 4, 0.1, 1.0, 8, 0, False))
    swept_view.selected = (0, 0)
    with pytest.raises(gr.Error, match="Write a prompt"):
        next(page.compare(swept_view, "   ", 4, 0.1, 1.0, 8, 0, False))
    with pytest.raises(gr.Error, match="temperature must lie in"):
        next(page.compare(swept_view, CRC_PROMPT, 4, 0.1, 0.0, 8, 0, False))
    with pytest.raises(gr.Error, match="needs a number"):
        next(page.compare(swept_view, CRC_PROMPT, None, 0.1, 1.0, 8, 0, False))
    with pytest.raises(gr.Error, match="No model pair"):
        next(page.compare(SessionView(), CRC_PROMPT, 4, 0.1, 1.0, 8, 0, False))


def test_stream_column_grows_then_ends_with_the_full_samples(sources, monkeypatch):
    monkeypatch.setattr(app, "STREAM_SECONDS", 0.0)
    key = (*sources, app.SETTINGS)
    settings = SamplingSettings(3, 0.1, 1.0, 8, 1)
    partials = list(
        app.stream_column(key, "hybrid", interval_restoration(1, 1), "Name a US state.", settings)
    )
    assert len(partials) >= 2
    lengths = [sum(replies.tokens) for replies in partials]
    assert lengths == sorted(lengths)
    pair = app.REGISTRY.get(key).pair
    final = sample_replies(build_hybrid(pair, 1, 1), pair.tokenizer, "Name a US state.", settings)
    assert partials[-1] == final  # texts, whether each ended, and each length


def test_stream_samples_takes_its_turn_and_stops_on_its_event_or_when_closed(tiny_pair):
    prompt, settings = "Tell me a joke.", SamplingSettings(2, 0.1, 1.0, 200, 0)
    turns = []

    class Turn:
        def __enter__(self):
            turns.append(threading.current_thread().name)

        def __exit__(self, *exc_info):
            turns.append("released")

    stop, seen = threading.Event(), []
    model, tokenizer = tiny_pair.post, tiny_pair.tokenizer
    for replies in stream_samples(model, tokenizer, prompt, settings, stop_event=stop, turn=Turn()):
        seen.append(replies.texts)
        if len(seen) == 3:
            stop.set()
    assert turns == ["stream-samples", "released"]  # generation ran in the worker, inside the turn
    assert 3 <= len(seen) <= 5  # it stopped at the next token and yielded no final replies
    assert max(len(text) for text in seen[-1]) < max(
        len(text) for text in sample(model, tokenizer, prompt, settings)
    )
    stream = stream_samples(model, tokenizer, prompt, settings)
    next(stream)
    stream.close()  # a visitor who stops waiting stops the generation too
    assert not any(thread.name == "stream-samples" for thread in threading.enumerate())


def test_sampling_while_a_sweep_runs_changes_no_sweep_result(page, sources, tiny_pair):
    view = SessionView()
    page.show_pair(view, *sources)
    sampler = SessionView(key=view.key, landscape=view.landscape, selected=(0, 2))
    stop, sampled = threading.Event(), []

    def keep_sampling() -> None:
        while not stop.is_set():
            sampled.append(list(page.compare(sampler, CRC_PROMPT, 2, 0.1, 1.0, 4, 0, False))[-1])

    thread = threading.Thread(target=keep_sampling)
    thread.start()
    try:
        for _ in page.run_sweep(view):
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    assert sampled
    reference = complete(
        survey(tiny_pair, encode_prompts(tiny_pair.tokenizer, default_prompts()), soup=True, use_cache=False)
    )
    assert view.landscape.post.quality == pytest.approx(reference.post.quality, abs=1e-6)
    for interval, point in reference.intervals.items():
        assert view.landscape.intervals[interval].diversity == pytest.approx(point.diversity, abs=1e-6)


def test_fair_lock_serves_waiters_in_arrival_order():
    lock, order = FairLock(), []
    lock.__enter__()

    def waiter(name: str) -> None:
        with lock:
            order.append(name)

    threads = []
    for name in "abc":
        threads.append(threading.Thread(target=waiter, args=(name,)))
        threads[-1].start()
        time.sleep(0.05)
    lock.__exit__(None, None, None)
    for thread in threads:
        thread.join()
    assert order == ["a", "b", "c"]


def test_crc_valid_answers_from_prompts():
    assert valid_answers(CRC_PROMPT) == ("2", "3", "4", "5", "6")
    letters = "Generate a random letter from C to F (inclusive). Do not include anything else."
    assert valid_answers(letters) == ("C", "D", "E", "F")
    assert valid_answers("Name a US state.") is None


# ---------------------------------------------------------------- registry, export, evaluation


def test_registry_loads_a_pair_once_for_concurrent_visitors(sources, tiny_paths):
    registry = PairRegistry(capacity=1)
    key = (*sources, app.SETTINGS)
    entries = []
    threads = [threading.Thread(target=lambda: entries.append(registry.get(key))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(entry) for entry in entries}) == 1
    assert registry.get(key) is entries[0]
    other = tuple(str(path) for path in tiny_paths("qwen2"))
    registry.get((*other, app.SETTINGS))
    assert key not in registry  # capacity 1: the least recently used pair made room


def test_export_writes_a_zip_only_into_the_operator_folder(page, swept_view, tmp_path, monkeypatch):
    monkeypatch.setenv("SLR_EXPORT_DIR", str(tmp_path / "exports"))
    update = wired(page, "export_selected", page.export_selected(swept_view, 1, 2))
    archive = Path(update[page.export_file]["value"])
    name = export_name(app.REGISTRY.get(swept_view.key).pair, (1, 2))
    assert archive.parent == tmp_path / "exports" and re.fullmatch(
        re.escape(name) + r"-[0-9a-f]{16}\.zip", archive.name
    )
    assert update[page.export_file]["visible"] is True
    assert "[1, 2]" in update[page.export_note]
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
    assert any(name.endswith("/config.json") for name in names)
    assert any(name.endswith(".safetensors") for name in names)
    with pytest.raises(gr.Error, match="invalid for a 4-layer model"):
        page.export_selected(swept_view, 2, 9)


def test_evaluate_needs_a_complete_landscape_then_returns_table_and_bars(
    page, swept_view, sources, monkeypatch
):
    from slr_core.downstream import evaluation

    incomplete = SessionView()
    page.show_pair(incomplete, *sources)
    incomplete.landscape = replace(incomplete.landscape, intervals={})
    with pytest.raises(gr.Error, match="not complete"):
        next(page.evaluate(incomplete, "qa", True, [1.0], 0))
    with pytest.raises(gr.Error, match="at least one temperature"):
        next(page.evaluate(swept_view, "qa", True, [], 0))
    # A smaller quick setting keeps this test short; the evaluation itself is the real one.
    monkeypatch.setitem(evaluation.PRESETS, ("qa", True), evaluation.EvalSettings(2, 2, 4))
    plan = page.plan_evaluation(swept_view, "qa", True, [1.0])
    methods = len(evaluation.select_methods(swept_view.landscape)[0])
    assert f"{methods} models (Post-trained, " in plan and f"in {methods} steps" in plan
    assert "2 questions × 2 samples of at most 4 new tokens" in plan and "About **" in plan
    updates = [wired(page, "evaluate", u) for u in page.evaluate(swept_view, "qa", True, [1.0], 0)]
    assert "Running the first step" in updates[0][page.evaluation_status]
    assert updates[0][page.stop_evaluation]["visible"] is True
    assert len(updates) == methods + 2  # the table grows method by method, the lock released in between
    assert f"1 / {methods} steps in" in updates[1][page.evaluation_status]
    update = updates[-2]
    table = update[page.evaluation_table]["value"]
    assert update[page.evaluation_table]["visible"] is True  # hidden until rows arrive: no placeholder
    assert {"method", "temperature", "precision"} <= set(table.columns)
    assert "Post-trained" in set(table["method"])
    assert len(update[page.evaluation_plot]["value"].data) >= 2
    assert "Open-ended QA" in update[page.evaluation_text]
    assert updates[-1][page.evaluation_status].endswith("done.")
    assert updates[-1][page.stop_evaluation]["visible"] is False


# ---------------------------------------------------------------- page


def test_defaults_presets_and_the_zero_gpu_switch(page, monkeypatch):
    monkeypatch.delenv("SLR_PRE", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert session.default_sources() == ("demo:pre", "demo:post")
    assert session.preset_choices()[0].startswith("demo")
    monkeypatch.setenv("SPACE_ID", "someone/slr-explorer")
    assert not session.default_sources()[0].startswith("demo:")
    assert not session.preset_choices()[0].startswith("demo")
    name = session.preset_choices()[0]
    filled = wired(page, "pick_preset", page.pick_preset(name))
    assert (filled[page.pre_box], filled[page.post_box]) == (
        session.PRESETS[name].pre,
        session.PRESETS[name].post,
    )
    assert page.pick_preset(session.CUSTOM) == {}

    def function() -> int:
        return 1

    assert not app.ZERO_GPU and app.gpu(60)(function) is function


def test_the_page_wires_clickable_heatmaps_rules_and_concurrency_groups(page):
    config = page.demo.get_config_file()
    components = {c.get("props", {}).get("elem_id"): c for c in config["components"]}
    for elem_id in ("heatmap-quality", "heatmap-diversity", "heatmap-stop"):
        props = components[elem_id]["props"]
        assert 'trigger("select"' in props["js_on_load"]
        assert "plotly.min.js" in props["head"]
    assert components["slr-rule"]["props"]["value"] == "strict"
    assert [choice[1] for choice in components["slr-rule"]["props"]["choices"]] == [
        "strict",
        "paper",
        "answer",
    ]
    assert [choice[1] for choice in components["slr-prompt-set"]["props"]["choices"]] == [
        "paper",
        "open",
        "upload",
    ]
    assert components["slr-quality-map"]["props"]["value"] == "strict_quality"
    dependencies = config["dependencies"]
    selects = [
        d
        for d in dependencies
        if any(t[1] == "select" for t in d["targets"]) and d["trigger_mode"] == "multiple"
    ]
    assert len(selects) == 3
    rule_events = [d for d in dependencies if any(t[0] == page.rule._id for t in d["targets"])]
    assert rule_events, "the rule selector triggers nothing"
    groups = {fn.name: (fn.concurrency_id, fn.concurrency_limit) for fn in page.demo.fns.values()}
    assert groups["run_sweep"] == ("sweep", 1)  # one sweep at a time, in its own group ...
    assert groups["compare"][0] == "sample"  # ... so it never queues sampling
    assert groups["select_cell"][0] == groups["change_view"][0] == "view"
    assert groups["export_selected"] == ("export", 1)
    assert groups["change_prompts"][0] == "load"  # encoding a set's tries is heavy: bounded per visitor
    assert app.build_app() is not page.demo  # build_app() is a fresh page's Blocks


# ---------------------------------------------------------------- restore modes, layer sets, fractions


def test_restore_selector_sweeps_each_mode_once_and_shows_it(page, sources):
    from slr_core.engine.naive import naive_interval_scores

    view = SessionView()
    page.show_pair(view, *sources)
    switched = wired(page, "change_mode", page.change_mode(view, "attention"))
    assert view.mode == "attention" and switched[page.sweep_token] != SKIP  # not swept yet: sweep it
    for _ in page.run_sweep(view):
        pass
    assert is_complete(view.landscape) and view.landscape.meta["restore"] == "attention"
    entry = app.REGISTRY.get(view.key)
    naive = naive_interval_scores(entry.pair, entry.encoded, 1, 2, mode="attention").mean(0)
    assert abs(view.landscape.intervals[(1, 2)].diversity - float(naive[1])) < 1e-4
    update = page.view_update(view)
    assert np.allclose(
        heat_z(update, page.heat_diversity), view.landscape.matrix("diversity"), equal_nan=True
    )
    assert "attention only" in update[page.modes_summary]
    fronts = [trace["name"] for trace in update[page.modes_plot].to_dict()["data"]]
    assert any(name.startswith("attention only (10 intervals)") for name in fronts)
    again = wired(page, "change_mode", page.change_mode(view, "layer"))
    assert view.mode == "layer" and view.landscape.meta["restore"] == "layer"
    assert page.change_mode(view, "attention")[page.sweep_token] == SKIP  # cached: no second sweep
    assert again[page.sweep_token] != SKIP  # whole layers were never swept in this cache


def test_compare_and_export_a_partial_fractional_set(page, swept_view, tmp_path, monkeypatch):
    from slr_core.slr.hybrid import Restoration, build_restored

    monkeypatch.setattr(app, "STREAM_SECONDS", 0.0)
    monkeypatch.setenv("SLR_EXPORT_DIR", str(tmp_path / "exports"))
    swept_view.mode = "mlp"
    updates = list(page.compare(swept_view, CRC_PROMPT, 2, 0.1, 1.0, 6, 3, False, "0,2-3", 0.5))
    final = {key: value for update in updates for key, value in update.items()}
    assert "Hybrid layers 0,2-3 MLP only, λ=0.5" in final[page.compare_info]
    assert "MiB of blended weights" in final[page.compare_info]
    pair = app.REGISTRY.get(swept_view.key).pair
    hybrid = build_restored(pair, Restoration((0, 2, 3), "mlp", 0.5))
    settings = SamplingSettings(2, 0.1, 1.0, 6, 3)
    assert list_items(final[page.columns["hybrid"][0]]) == sample(
        hybrid, pair.tokenizer, CRC_PROMPT, settings
    )
    update = wired(page, "export_selected", page.export_selected(swept_view, 1, 2, "", 0.5))
    assert "[1, 2] MLP only, λ=0.5" in update[page.export_note]
    with zipfile.ZipFile(update[page.export_file]["value"]) as opened:
        provenance = [name for name in opened.namelist() if name.endswith("slr_export.json")]
        saved = json.loads(opened.read(provenance[0]))
    assert saved["restore"] == "mlp" and saved["lambda"] == 0.5 and saved["layers"] == [1, 2]
    with pytest.raises(gr.Error, match="Cannot read layers"):
        next(page.compare(swept_view, CRC_PROMPT, 2, 0.1, 1.0, 6, 3, False, "2-1", 1.0))
    swept_view.selected = (1, 2)
    sliced = wired(page, "slice_lambda", list(page.slice_lambda(swept_view, ""))[-1])
    names = [trace["name"] for trace in sliced[page.tradeoff].to_dict()["data"]]
    assert "[1, 2] MLP only, λ = 0 … 1" in names and "Proxy-Soup (α = 0 … 1)" in names
