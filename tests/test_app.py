"""The app's backend on tiny random pairs: drift, landscape handlers, selection, sampling, export."""

from __future__ import annotations

import html
import json
import re
import threading
import time
import zipfile
from dataclasses import replace

import gradio as gr
import pytest
import torch

import app
from slr_core.crc import default_prompts, encode_prompts, valid_answers
from slr_core.drift import layer_drift
from slr_core.hybrid import build_hybrid
from slr_core.landscape import Landscape
from slr_core.models import Settings, check_reachable, decoder_layers, parse_source
from slr_core.registry import FairLock, PairRegistry
from slr_core.sampling import SamplingSettings, sample
from slr_core.survey import complete, is_complete, result_count, stored_landscape, survey

CRC_PROMPT = "Generate a random integer in the range [2, 6]. Do not include anything else in your reply."
SKIP = gr.skip()


@pytest.fixture(scope="module", autouse=True)
def cpu_settings():
    """The app runs on the CPU in these tests, as the tiny_pair fixture does."""
    previous = app.SETTINGS
    app.SETTINGS = Settings(device="cpu")
    yield
    app.SETTINGS = previous


@pytest.fixture
def sources(tiny_paths) -> tuple[str, str]:
    """The tiny Llama pair's folders as the page would send them."""
    pre, post = tiny_paths("llama")
    return str(pre), str(post)


@pytest.fixture(scope="module")
def swept_landscape(tiny_paths, tmp_path_factory) -> Landscape:
    """The tiny pair's full landscape, swept once through the page's own handlers."""
    pre, post = tiny_paths("llama")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLR_CACHE_DIR", str(tmp_path_factory.mktemp("swept-cache")))
        view = app.SessionView()
        app.show_pair(view, str(pre), str(post))
        for _ in app.run_sweep(view):
            pass
    assert is_complete(view.landscape)
    return view.landscape


@pytest.fixture
def swept_view(sources, swept_landscape) -> app.SessionView:
    """A session showing the tiny pair with its complete landscape."""
    return app.SessionView(key=(*sources, app.SETTINGS), landscape=app.snapshot(swept_landscape))


@pytest.fixture(scope="module")
def output_counts() -> dict[str, int]:
    """How many outputs the page wires to each handler (a handler must return exactly that many)."""
    return {fn.name: len(fn.outputs) for fn in app.build_app().fns.values() if fn.name}


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
    from slr_core import survey as survey_module
    from slr_core.export import write_csv

    entry = app.REGISTRY.get((*sources, app.SETTINGS))
    swept = complete(survey(entry.pair, entry.encoded, soup=True, use_cache=False))
    write_csv(swept, tmp_path / "shipped" / "tiny.csv")
    monkeypatch.setattr(survey_module, "SHIPPED_DIR", tmp_path / "shipped")
    shipped = stored_landscape(entry.pair, entry.encoded)  # the cache is empty: everything comes from the CSV
    assert is_complete(shipped)
    assert shipped.intervals[(0, 3)].quality == pytest.approx(swept.intervals[(0, 3)].quality, abs=1e-6)


def test_a_sweep_fills_the_maps_live_and_a_second_visit_reads_the_cache(sources, tiny_pair, output_counts):
    view = app.SessionView()
    *shown, sweep_token = app.show_pair(view, *sources)
    assert len(shown) + 1 == output_counts["show_pair"] == output_counts["start_session"]
    assert sweep_token != SKIP  # nothing cached yet: the page asks for a sweep
    assert "Waiting to sweep" in shown[-2]
    assert shown[5:7] == [None, None]  # no interval to suggest before the sweep
    updates = list(app.run_sweep(view))
    assert len(updates) >= 2 and {len(update) for update in updates} == {
        output_counts["run_sweep"]
    }  # one value per output
    heat_quality, heat_diversity, tradeoff, references, status, start, end, drift = updates[-1]
    assert json.loads(heat_quality)["layout"]["meta"]["filled"] == 10
    assert "complete" in status
    assert "Post-trained" in references and "Best SLR" in references
    best = view.landscape.best_interval(view.landscape.q_min(0.9))
    assert (start, end) == best  # the boxes suggest the best interval
    assert f"restored [{best[0]}, {best[1]}]" in drift.layout.title.text
    reference = complete(
        survey(tiny_pair, encode_prompts(tiny_pair.tokenizer, default_prompts()), use_cache=False)
    )
    for interval, point in reference.intervals.items():
        assert view.landscape.intervals[interval].quality == pytest.approx(point.quality, abs=1e-6)
    assert len(view.landscape.soup) == 21

    again = app.SessionView()
    *_, status_again, _, token_again = app.show_pair(again, *sources)
    assert token_again == SKIP  # everything cached: no sweep event at all
    assert "complete" in status_again
    assert again.landscape.intervals == view.landscape.intervals


def test_bad_sources_give_clear_errors_and_keep_the_current_view(swept_view, sources, tiny_paths):
    before = (swept_view.key, swept_view.landscape)
    with pytest.raises(gr.Error, match="Model folder not found"):
        app.show_pair(swept_view, "/no/such/model", sources[1])
    other_family = str(tiny_paths("qwen2")[1])
    with pytest.raises(gr.Error, match="Different architectures"):
        app.show_pair(swept_view, sources[0], other_family)
    with pytest.raises(gr.Error, match="Give both"):
        app.show_pair(swept_view, " ", sources[1])
    assert (swept_view.key, swept_view.landscape) == before


def test_an_unreachable_hub_preset_fails_fast_with_an_offline_message(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    began = time.monotonic()
    with pytest.raises(gr.Error, match="presets need internet access"):
        app.show_pair(app.SessionView(), "some-org/some-model-that-is-not-cached", "some-org/other-model")
    assert time.monotonic() - began < 10
    check_reachable(parse_source("demo:post"))  # not a hub source: nothing to check


def test_clicks_select_per_session_intervals(swept_view, sources):
    other = app.SessionView()
    app.show_pair(other, *sources)
    *outputs_a, start_a, end_a = app.select_cell(
        swept_view, gr.SelectData(None, {"index": [0, 1], "value": 0.5})
    )
    *_, start_b, end_b = app.select_cell(other, gr.SelectData(None, {"index": [2, 3], "value": 0.5}))
    assert (swept_view.selected, other.selected) == ((0, 1), (2, 3))
    assert (start_a, end_a, start_b, end_b) == (0, 1, 2, 3)
    shapes = json.loads(outputs_a[0])["layout"]["shapes"]
    assert [(s["x0"], s["y0"]) for s in shapes] == [(0.5, -0.5)]  # column j = 1, row i = 0
    assert "Selected [0, 1]" in outputs_a[2]
    with pytest.raises(gr.Error, match="invalid for a 4-layer model"):
        app.select_cell(swept_view, gr.SelectData(None, {"index": [3, 1], "value": 0.5}))
    assert swept_view.selected == (0, 1)


def test_q_min_moves_the_best_interval(swept_view, output_counts):
    landscape = swept_view.landscape
    outputs = app.change_q_fraction(swept_view, 0.5)
    assert len(outputs) == output_counts["change_q_fraction"]
    best = landscape.best_interval(landscape.q_min(0.5))
    assert f"Best SLR [{best[0]}, {best[1]}]" in outputs[2]
    assert "q_min = 0.50" in outputs[2]
    *_, start, end = app.select_best(swept_view)
    assert (start, end) == best == swept_view.selected


# ---------------------------------------------------------------- sampling


def test_compare_streams_the_post_model_and_the_hybrid_reproducibly(swept_view, monkeypatch, output_counts):
    monkeypatch.setattr(app, "STREAM_SECONDS", 0.0)
    swept_view.selected = (1, 2)
    updates = list(app.compare(swept_view, CRC_PROMPT, 4, 0.1, 1.0, 10, 7, False))
    assert len(updates) > 4  # the columns were redrawn while tokens came in
    assert {len(update) for update in updates} == {output_counts["compare"]}
    header, post_html, post_stats, post_histogram, hybrid_html, hybrid_stats, hybrid_histogram, *pre = (
        updates[-1]
    )
    assert "Interval [1, 2]" in header and "seed **7**" in header and "4 samples" in header
    settings = SamplingSettings(4, 0.1, 1.0, 10, 7)
    pair = app.REGISTRY.get(swept_view.key).pair
    assert list_items(post_html) == sample(pair.post, pair.tokenizer, CRC_PROMPT, settings)
    assert list_items(hybrid_html) == sample(build_hybrid(pair, 1, 2), pair.tokenizer, CRC_PROMPT, settings)
    assert "SLR hybrid [1, 2]" in hybrid_html and "done in" in hybrid_html
    for statistics in (post_stats, hybrid_stats):
        assert "distinct-1" in statistics and "embedding dissimilarity" in statistics
    assert post_histogram["visible"] is True and hybrid_histogram["visible"] is True
    assert pre == [SKIP, SKIP, SKIP]  # the pre-trained column was not asked for
    streaming = [u for u in updates if "sampling…" in u[4]]
    assert streaming, "the hybrid column never showed partial samples"


def test_compare_can_add_the_pre_trained_model(swept_view):
    swept_view.selected = (0, 3)
    *_, pre_html, pre_stats, pre_histogram = list(
        app.compare(swept_view, "Tell me a joke.", 2, 0.1, 1.0, 6, 0, True)
    )[-1]
    assert "Pre-trained" in pre_html and len(list_items(pre_html)) == 2
    assert "distinct answers" in pre_stats
    assert pre_histogram["visible"] is False  # not a CRC-style prompt


def test_compare_rejects_bad_input_clearly(swept_view):
    swept_view.selected = None
    with pytest.raises(gr.Error, match="Click a heatmap cell"):
        next(app.compare(swept_view, CRC_PROMPT, 4, 0.1, 1.0, 8, 0, False))
    swept_view.selected = (0, 0)
    with pytest.raises(gr.Error, match="Write a prompt"):
        next(app.compare(swept_view, "   ", 4, 0.1, 1.0, 8, 0, False))
    with pytest.raises(gr.Error, match="temperature must lie in"):
        next(app.compare(swept_view, CRC_PROMPT, 4, 0.1, 0.0, 8, 0, False))
    with pytest.raises(gr.Error, match="No model pair"):
        next(app.compare(app.SessionView(), CRC_PROMPT, 4, 0.1, 1.0, 8, 0, False))


def test_stream_samples_grow_then_end_with_the_full_samples(sources, monkeypatch):
    monkeypatch.setattr(app, "STREAM_SECONDS", 0.0)
    key = (*sources, app.SETTINGS)
    settings = SamplingSettings(3, 0.1, 1.0, 8, 1)
    partials = list(app.stream_samples(key, "hybrid", (1, 1), "Name a US state.", settings))
    assert len(partials) >= 2
    lengths = [sum(len(text) for text in texts) for texts in partials]
    assert lengths == sorted(lengths)
    pair = app.REGISTRY.get(key).pair
    assert partials[-1] == sample(build_hybrid(pair, 1, 1), pair.tokenizer, "Name a US state.", settings)


def test_sampling_while_a_sweep_runs_changes_no_sweep_result(sources, tiny_pair):
    view = app.SessionView()
    app.show_pair(view, *sources)
    sampler = app.SessionView(key=view.key, selected=(0, 2))
    stop, sampled = threading.Event(), []

    def keep_sampling() -> None:
        while not stop.is_set():
            sampled.append(list(app.compare(sampler, CRC_PROMPT, 2, 0.1, 1.0, 4, 0, False))[-1])

    thread = threading.Thread(target=keep_sampling)
    thread.start()
    try:
        for _ in app.run_sweep(view):
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


def test_export_writes_a_zip_only_into_the_operator_folder(swept_view, tmp_path, monkeypatch):
    monkeypatch.setenv("SLR_EXPORT_DIR", str(tmp_path / "exports"))
    update, note = app.export_selected(swept_view, 1, 2)
    archive = tmp_path / "exports" / f"{app.export_name(app.REGISTRY.get(swept_view.key).pair, (1, 2))}.zip"
    assert update["value"] == str(archive) and update["visible"] is True
    assert "[1, 2]" in note
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
    assert any(name.endswith("/config.json") for name in names)
    assert any(name.endswith(".safetensors") for name in names)
    with pytest.raises(gr.Error, match="invalid for a 4-layer model"):
        app.export_selected(swept_view, 2, 9)


def test_evaluate_needs_a_complete_landscape_then_returns_table_and_bars(swept_view, sources, monkeypatch):
    from slr_core import evaluation

    incomplete = app.SessionView()
    app.show_pair(incomplete, *sources)
    incomplete.landscape = replace(incomplete.landscape, intervals={})
    with pytest.raises(gr.Error, match="not complete"):
        app.evaluate(incomplete, "qa", True, [1.0], 0)
    # A smaller quick setting keeps this test short; the evaluation itself is the real one.
    monkeypatch.setitem(evaluation.PRESETS, ("qa", True), evaluation.EvalSettings(2, 2, 4))
    table, figure, text = app.evaluate(swept_view, "qa", True, [1.0], 0)
    assert {"method", "temperature", "precision"} <= set(table.columns)
    assert "Post-trained" in set(table["method"])
    assert len(figure.data) >= 2
    assert "Open-ended QA" in text


# ---------------------------------------------------------------- page


def test_defaults_presets_and_the_zero_gpu_switch(monkeypatch):
    monkeypatch.delenv("SLR_PRE", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert app.default_sources() == ("demo:pre", "demo:post")
    assert app.preset_choices()[0].startswith("demo")
    monkeypatch.setenv("SPACE_ID", "someone/slr-explorer")
    assert not app.default_sources()[0].startswith("demo:")
    assert not app.preset_choices()[0].startswith("demo")

    def function() -> int:
        return 1

    assert app.gpu(60)(function) is function


def test_the_page_wires_clickable_heatmaps_and_concurrency_groups():
    demo = app.build_app()
    config = demo.get_config_file()
    components = {c.get("props", {}).get("elem_id"): c for c in config["components"]}
    for elem_id in ("heatmap-quality", "heatmap-diversity"):
        props = components[elem_id]["props"]
        assert 'trigger("select"' in props["js_on_load"]
        assert "plotly.min.js" in props["head"]
    dependencies = config["dependencies"]
    selects = [
        d
        for d in dependencies
        if any(t[1] == "select" for t in d["targets"]) and d["trigger_mode"] == "multiple"
    ]
    assert len(selects) == 2
    groups = {fn.name: (fn.concurrency_id, fn.concurrency_limit) for fn in demo.fns.values()}
    assert groups["run_sweep"] == ("sweep", 1)  # one sweep at a time, in its own group ...
    assert groups["compare"][0] == "sample"  # ... so it never queues sampling
    assert groups["select_cell"][0] == groups["change_q_fraction"][0] == "view"
    assert groups["export_selected"][0] == "export"
