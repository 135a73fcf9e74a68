"""Figure builders on a real (tiny) CRC landscape: what each chart shows and where."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import plotly.graph_objects as go
import pytest
from strict_landscapes import PAPER_PICK, STRICT_PICK, paper_only_landscape, two_rule_landscape

from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.cached_sweep import complete, survey
from slr_core.report import evaluation_figure, figures
from slr_core.slr.landscape import METRICS, Landscape


@pytest.fixture(scope="module")
def landscape(tiny_pair) -> Landscape:
    """The full landscape of the tiny Llama pair, soup included (computed, not cached)."""
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts())
    return complete(survey(tiny_pair, encoded, soup=True, use_cache=False))


def trace_named(figure: go.Figure, prefix: str):
    """The first trace whose name starts with `prefix`."""
    return next(trace for trace in figure.data if (trace.name or "").startswith(prefix))


def test_heatmap_colours_only_upper_triangle_with_start_on_y(landscape):
    figure = figures.heatmap_figure(landscape, "quality")
    heatmap = figure.data[0]
    z = np.asarray(heatmap.z, dtype=float)
    size = landscape.num_layers
    assert z.shape == (size, size)
    for i in range(size):
        for j in range(size):
            if i <= j:
                assert z[i, j] == pytest.approx(landscape.intervals[(i, j)].quality)
            else:
                assert math.isnan(z[i, j])
    assert heatmap.hoverongaps is False
    assert list(figure.layout.yaxis.range) == [size - 0.5, -0.5]  # start i runs top to bottom
    assert figure.layout.xaxis.title.text == "end layer j"
    assert figure.layout.meta["num_layers"] == size


def test_heatmap_hover_shows_all_four_numbers_and_change_vs_post():
    landscape = two_rule_landscape()
    figure = figures.heatmap_figure(landscape, "diversity")
    text = figure.data[0].text[1][1]
    point, post = landscape.intervals[STRICT_PICK], landscape.post
    assert "[1, 1]" in text
    assert f"Q = {point.quality:.3f} ({point.quality - post.quality:+.3f} vs post)" in text
    change = point.strict_quality - post.strict_quality
    assert f"strict Q = {point.strict_quality:.3f} ({change:+.3f} vs post)" in text
    assert f"stop = {point.stop:.3f} ({point.stop - post.stop:+.3f} vs post)" in text
    assert f"D = {point.diversity:.3f} ({point.diversity - post.diversity:+.3f} vs post)" in text
    assert figure.data[0].text[3][1] == ""  # below the diagonal: no interval, no hover
    missing = figures.heatmap_figure(paper_only_landscape(), "quality").data[0].text[1][1]
    assert "strict Q = not computed" in missing and "stop = not computed" in missing


@pytest.mark.parametrize("metric", METRICS)
def test_every_metric_has_a_heatmap_of_its_matrix(metric):
    landscape = two_rule_landscape()
    figure = figures.heatmap_figure(landscape, metric, best=STRICT_PICK)
    np.testing.assert_allclose(np.asarray(figure.data[0].z, dtype=float), landscape.matrix(metric))
    assert figure.layout.meta["metric"] == metric
    # Said in the title exactly when the hand-made landscape lacks the metric (answer D, here).
    assert ("not computed" in figure.layout.title.text) == bool(np.isnan(landscape.matrix(metric)).all())
    if metric == "stop":  # a rate: one fixed scale, so maps of different pairs compare
        assert (figure.data[0].zmin, figure.data[0].zmax) == (0.0, 1.0)


def test_strict_maps_of_a_landscape_without_strict_numbers_say_so():
    figure = figures.heatmap_figure(paper_only_landscape(), "stop")
    assert np.isnan(np.asarray(figure.data[0].z, dtype=float)).all()
    assert "not computed" in figure.layout.title.text


def test_heatmap_marks_best_and_selected_intervals():
    landscape = two_rule_landscape()
    best = landscape.best_interval(landscape.q_min(0.9))  # the default rule: strict
    assert best == STRICT_PICK
    figure = figures.heatmap_figure(landscape, "quality", best=best, selected=(0, 2))
    star = trace_named(figure, "best")
    assert (star.x[0], star.y[0]) == (best[1], best[0])  # x = end j, y = start i
    assert star.hoverinfo == "skip"  # hovering the star still shows the cell underneath
    (shape,) = figure.layout.shapes
    assert (shape.x0, shape.x1, shape.y0, shape.y1) == (1.5, 2.5, -0.5, 0.5)


def test_heatmap_json_round_trips_for_the_browser(landscape):
    figure_json = json.loads(figures.heatmap_figure(landscape, "quality").to_json())
    assert figure_json["data"][0]["type"] == "heatmap"
    assert figure_json["layout"]["meta"]["filled"] == len(landscape.intervals)


def test_heatmap_of_an_empty_landscape_and_a_bad_metric():
    empty = figures.heatmap_figure(Landscape(5), "quality")
    assert np.isnan(np.asarray(empty.data[0].z, dtype=float)).all()
    with pytest.raises(ValueError, match="strict_quality"):
        figures.heatmap_figure(Landscape(5), "validity")


def test_tradeoff_figure_has_every_series_of_figure_2(landscape):
    rule = "strict" if landscape.has_strict else "paper"
    quality = "strict_quality" if landscape.has_strict else "quality"
    q_min = landscape.q_min(0.9, rule)
    best = landscape.best_interval(q_min, rule) or (0, 1)
    figure = figures.tradeoff_figure(landscape, q_min, best=best, selected=(1, 1), rule=rule)
    everything = trace_named(figure, "all intervals")
    assert len(everything.x) == len(landscape.intervals)
    front = trace_named(figure, "Pareto front")
    assert [tuple(map(int, t.strip("[]").split(", "))) for t in front.text] == landscape.pareto_front(rule)
    soup = trace_named(figure, "Proxy-Soup")
    assert len(soup.x) == len(landscape.soup) == 21
    assert trace_named(figure, "post-trained").y[0] == pytest.approx(getattr(landscape.post, quality))
    assert trace_named(figure, "pre-trained").x[0] == pytest.approx(landscape.pre.diversity)
    slice_trace = trace_named(figure, f"fixed start i = {best[0]}")
    assert len(slice_trace.x) == landscape.num_layers - best[0]
    selected = trace_named(figure, "selected [1, 1]")
    assert selected.y[0] == pytest.approx(getattr(landscape.intervals[(1, 1)], quality))
    (line,) = figure.layout.shapes
    assert line.y0 == line.y1 == pytest.approx(q_min)


@pytest.mark.parametrize(
    ("rule", "quality", "pick"), [("strict", "strict_quality", STRICT_PICK), ("paper", "quality", PAPER_PICK)]
)
def test_tradeoff_figure_plots_the_rules_quality_and_pareto_front(rule, quality, pick):
    landscape = two_rule_landscape()
    q_min = landscape.q_min(0.9, rule)
    figure = figures.tradeoff_figure(landscape, q_min, best=pick, rule=rule)
    everything = trace_named(figure, "all intervals")
    expected = [getattr(point, quality) for _, point in sorted(landscape.intervals.items())]
    assert list(everything.y) == pytest.approx(expected)
    front = trace_named(figure, "Pareto front")
    assert [tuple(map(int, t.strip("[]").split(", "))) for t in front.text] == landscape.pareto_front(rule)
    assert list(trace_named(figure, "Proxy-Soup").y) == pytest.approx(
        [getattr(landscape.soup[a], quality) for a in sorted(landscape.soup)]
    )
    assert trace_named(figure, f"best [{pick[0]}, {pick[1]}]").y[0] == pytest.approx(
        getattr(landscape.intervals[pick], quality)
    )
    assert figure.layout.meta["rule"] == rule and rule in figure.layout.annotations[0].text
    assert ("strict" in figure.layout.yaxis.title.text) == (rule == "strict")


def test_tradeoff_figure_defaults_to_the_rule_the_landscape_supports():
    assert figures.tradeoff_figure(two_rule_landscape()).layout.meta["rule"] == "strict"
    assert figures.tradeoff_figure(paper_only_landscape()).layout.meta["rule"] == "paper"
    with pytest.raises(ValueError, match="Unknown selection rule"):
        figures.tradeoff_figure(two_rule_landscape(), rule="loose")


def test_tradeoff_figure_of_a_landscape_still_empty():
    figure = figures.tradeoff_figure(Landscape(4))
    assert len(figure.data) == 0


def test_drift_figure_highlights_the_interval():
    figure = figures.drift_figure([0.1, 0.2, 0.3, 0.4], interval=(1, 2))
    bars = figure.data[0]
    assert list(bars.y) == [0.1, 0.2, 0.3, 0.4]
    assert list(bars.marker.color) == [
        figures.POST_COLOUR,
        figures.SLR_COLOUR,
        figures.SLR_COLOUR,
        figures.POST_COLOUR,
    ]
    assert "[1, 2]" in figure.layout.title.text


def test_crc_answers_read_replies_as_crc_scores_them():
    from slr_core.downstream.metrics import crc_answers

    replies = ["3", " 3.", "**5**", "3, because", "5就是5", "10", "seven", "", "b", "Bee", "B!"]
    alone, extra, invalid = crc_answers(replies, ("3", "4", "5", "B"))
    assert alone == Counter({"3": 2, "5": 1, "B": 1})
    assert extra == Counter({"3": 1, "5": 1})
    # "10" and "Bee" continue a number or word; "b" is another token than "B" (CRC is case-sensitive)
    assert invalid == 5


def test_crc_histogram_stacks_alone_and_run_on_answers():
    figure = figures.crc_histogram(Counter({"3": 4}), Counter({"3": 1, "5": 2}), 3, ("3", "4", "5"))
    alone, extra, invalid = figure.data
    assert list(alone.x) == ["3", "4", "5", "invalid"]
    assert list(alone.y) == [4, 0, 0, 0]
    assert list(extra.y) == [1, 0, 2, 0]
    assert list(invalid.y) == [0, 0, 0, 3]
    assert figure.layout.barmode == "stack"


def test_evaluation_figure_groups_methods_per_metric():
    bars = {
        "precision": [
            {"method": "Post-trained", "temperature": "1.0", "value": 0.9, "std": 0.05},
            {"method": "SLR [1, 2]", "temperature": "1.0", "value": 0.85, "std": 0.04},
        ],
        "entropy": [
            {"method": "Post-trained", "temperature": "1.0", "value": 0.4, "std": math.nan},
            {"method": "SLR [1, 2]", "temperature": "1.0", "value": 1.1, "std": 0.2},
        ],
    }
    figure = evaluation_figure.evaluation_figure(bars)
    assert [annotation.text for annotation in figure.layout.annotations] == ["precision", "entropy"]
    assert len(figure.data) == 4
    slr = [trace for trace in figure.data if trace.name == "SLR [1, 2]"]
    assert [trace.y[0] for trace in slr] == [0.85, 1.1]
    assert slr[0].marker.color == figures.SLR_COLOUR
    assert evaluation_figure.method_colour("Proxy-Soup alpha=0.40", []) == figures.SOUP_COLOUR
    assert len(evaluation_figure.evaluation_figure({}).data) == 0
