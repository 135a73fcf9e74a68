"""Hosted mode tried as a hostile visitor would, through the app's handlers and its HTTP API (issue 21)."""

from __future__ import annotations

import time

import gradio as gr
import pytest

import app
from slr_core.cli import main as cli_main
from slr_core.engine.cached_sweep import first_look
from slr_core.engine.lambda_slice import LAMBDAS, lambda_slice
from slr_core.serve.session import SessionView, snapshot

CRC_PROMPT = "Generate a random integer in the range [2, 6]. Do not include anything else in your reply."
HUGE = "0-99999999999"

pytestmark = pytest.mark.usefixtures("page")


@pytest.fixture
def shown(page, tiny_paths) -> SessionView:
    """A session showing the tiny Llama pair through the page's own Load handler."""
    pre, post = tiny_paths("llama")
    view = SessionView()
    page.show_pair(view, str(pre), str(post))
    view.selected = (0, 1)
    return view


# ---------------------------------------------------------------- item 1: one request takes the server down


def test_a_huge_layer_range_is_refused_at_once_by_compare_slice_and_export(
    page, shown, tmp_path, monkeypatch
):
    monkeypatch.setenv("SLR_EXPORT_DIR", str(tmp_path / "exports"))
    handlers = {
        "compare": lambda layers: next(
            page.compare(shown, CRC_PROMPT, 2, 0.1, 1.0, 4, 0, False, layers, 1.0)
        ),
        "slice": lambda layers: next(page.slice_lambda(shown, layers)),
        "export": lambda layers: page.export_selected(shown, 0, 1, layers, 1.0),
    }
    for name, handler in handlers.items():
        for layers in (HUGE, "0-3," * 2000):
            started = time.perf_counter()
            with pytest.raises(gr.Error, match="invalid for a 4-layer model|characters long"):
                handler(layers)
            assert time.perf_counter() - started < 1.0, name


def test_the_cli_refuses_a_huge_layer_range_with_exit_2(tiny_paths, tmp_path, capsys):
    pre, post = tiny_paths("llama")
    argv = ["export", "--pre", str(pre), "--post", str(post), "--layers", HUGE, "--out", str(tmp_path / "x")]
    started = time.perf_counter()
    assert cli_main(argv) == 2
    assert "invalid for a 4-layer model" in capsys.readouterr().err and time.perf_counter() - started < 30


# ---------------------------------------------------------------- item 6: repeated values multiply the work


def test_repeated_temperatures_count_once_and_too_many_are_refused(page, shown):
    from slr_core.serve.session import evaluation_settings

    assert evaluation_settings([1.0] * 200, 0) == ([1.0], 0)
    assert evaluation_settings([1.5, 1.0, 1.5], 0)[0] == [1.0, 1.5]
    with pytest.raises(gr.Error, match="at most 8 different values"):
        next(page.evaluate(shown, "qa", True, [0.5 + k / 10 for k in range(9)], 0))
    with pytest.raises(gr.Error, match="at most 8 different values"):
        next(page.evaluate(shown, "qa", True, [1.0] * 10**6, 0))


# ---------------------------------------------------------------- items 7 and 11: the lambda slice


def test_the_slice_draws_point_by_point_stops_when_closed_and_its_zero_is_on_the_full_set(
    page, shown, monkeypatch
):
    from slr_core.engine import lambda_slice as slice_module

    entry = app.REGISTRY.get(shown.key)
    # A first look in progress: the map and the post-trained point are on 2 prompts only.
    shown.landscape = snapshot(next(first_look(entry.pair, entry.encoded, use_cache=False)))
    assert "post" in shown.landscape.coarse
    scored = []
    real_scores = slice_module.model_scores
    monkeypatch.setattr(
        slice_module, "model_scores", lambda *a, **k: scored.append(1) or real_scores(*a, **k)
    )
    steps = page.slice_lambda(shown, "1-2")
    first = next(steps)
    assert len(scored) == 1 and len(shown.lambda_slice[1]) == 1  # one point drawn, one point computed
    names = [trace["name"] for trace in first[page.tradeoff].to_dict()["data"]]
    assert any("λ = 0 … 1" in name for name in names)
    next(steps)
    steps.close()  # the visitor pressed Stop, or left
    assert len(scored) == 2
    full = lambda_slice(entry.pair, entry.encoded, shown.restoration("1-2"), use_cache=False, lambdas=(0.0,))
    assert shown.lambda_slice[1][0.0] == full[0.0] != shown.landscape.post  # λ = 0 on all prompts
    # Cached as before: the rest of the slice computes only the points not yet computed.
    before = len(scored)
    updates = list(page.slice_lambda(shown, "1-2"))
    assert len(updates) == len(LAMBDAS) and len(scored) - before == len(LAMBDAS) - 2
    assert page.demo.fns and any(fn.name == "slice_lambda" for fn in page.demo.fns.values())
    stop = [fn for fn in page.demo.fns.values() if fn.name != "slice_lambda" and fn.cancels]
    assert stop, "a stop button cancels the slice"
