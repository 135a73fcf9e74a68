"""A visitor loads another pair while a sweep, a comparison, an export or an evaluation of the first one
is under way: what the page shows, exports and evaluates must always name one pair."""

from __future__ import annotations

import gradio as gr
import pytest

import app
from slr_core.engine.cached_sweep import stored_landscape
from slr_core.serve.session import SessionView

CRC_PROMPT = "Generate a random integer in the range [2, 6]. Do not include anything else in your reply."


pytestmark = pytest.mark.usefixtures("page")  # conftest: the page, with the app on the CPU


@pytest.fixture
def two_pairs(tiny_paths, tmp_path, monkeypatch) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two different tiny pairs (Llama, Qwen2) as the page would send them, with an empty cache."""
    monkeypatch.setenv("SLR_CACHE_DIR", str(tmp_path / "cache"))
    return tuple(tuple(str(path) for path in tiny_paths(family)) for family in ("llama", "qwen2"))


def fingerprints(landscape) -> tuple[str, str]:
    return landscape.meta["pre_fingerprint"], landscape.meta["post_fingerprint"]


def pair_of(view: SessionView):
    return app.REGISTRY.get(view.key).pair


def test_a_pair_loaded_mid_sweep_stops_the_old_sweep_and_shows_only_its_own_numbers(page, two_pairs):
    first, second = two_pairs
    view = SessionView()
    page.show_pair(view, *first)
    sweep = page.run_sweep(view)
    next(sweep)  # the first pair's sweep has drawn at least once
    old = pair_of(view)
    page.show_pair(view, *second)
    assert list(sweep) == []  # the old sweep stops at its next step, drawing nothing more
    new = pair_of(view)
    assert fingerprints(view.landscape) == (new.pre_fingerprint, new.post_fingerprint)
    # Nothing of the first pair leaked into the second's landscape, on the page or in the cache.
    assert view.landscape.intervals == {} and view.landscape.post is None
    entry = app.REGISTRY.get(view.key)
    assert stored_landscape(entry.pair, entry.encoded).intervals == {}
    assert old.post_fingerprint != new.post_fingerprint


def test_a_pair_loaded_mid_compare_stops_the_samples_of_the_old_one(page, two_pairs):
    first, second = two_pairs
    view = SessionView()
    page.show_pair(view, *first)
    view.selected = (0, 1)
    old_label = pair_of(view).label
    compare = page.compare(view, CRC_PROMPT, 2, 0.1, 1.0, 4, 0, False)
    header = next(compare)[page.compare_info]
    assert old_label in header
    next(compare)  # the first column has started streaming
    page.show_pair(view, *second)
    with pytest.raises(gr.Error, match="another pair was loaded"):
        for _ in compare:
            pass


def test_export_and_evaluation_refuse_a_landscape_of_another_pair(page, two_pairs, tmp_path, monkeypatch):
    first, second = two_pairs
    monkeypatch.setenv("SLR_EXPORT_DIR", str(tmp_path / "exports"))
    view = SessionView()
    page.show_pair(view, *second)
    other_landscape = view.landscape
    page.show_pair(view, *first)
    view.landscape, view.landscapes = other_landscape, {"layer": other_landscape}  # a stale mix
    with pytest.raises(gr.Error, match="Another pair was loaded meanwhile"):
        page.export_selected(view, 0, 1)
    assert not (tmp_path / "exports").exists() or not any((tmp_path / "exports").iterdir())
    # Even a complete landscape (completeness faked here) of the other pair is refused by name.
    monkeypatch.setattr("slr_core.serve.session.is_complete", lambda landscape: True)
    with pytest.raises(gr.Error, match="Another pair was loaded meanwhile"):
        next(page.evaluate(view, "qa", True, [1.0], 0))
