"""The `answer` rule: max answer D subject to strict Q >= q_min, shown wherever the other rules' picks are,
and refused with a clear message on a landscape swept before answer D existed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from slr_core.report import figures, pair_figures
from slr_core.report.difference import Difference, picks, picks_text
from slr_core.report.modes import modes_markdown
from slr_core.report.summary import (
    NO_ANSWER,
    best_text,
    references_markdown,
    summary_markdown,
    summary_text,
    usable_rule,
)
from slr_core.slr.landscape import RULES, Landscape, Point, RuleUnavailable

POST = Point(0.9, 0.5, 0.9, 0.8, 0.4)
# Each rule picks a different interval at fraction 0.9 (strict and answer: strict Q >= 0.72; paper: Q >= 0.81).
INTERVALS = {
    (0, 0): Point(0.90, 1.0, 0.90, 0.75, 0.5),  # strict: the most D among strict-feasible
    (0, 1): Point(0.90, 0.8, 0.90, 0.80, 0.9),  # answer: the most answer D among strict-feasible
    (1, 2): Point(0.95, 1.2, 0.10, 0.10, 1.5),  # paper: first-token Q high, but replies run on
    (2, 2): Point(0.50, 0.7, 0.90, 0.45, 2.0),  # most answer D of all, but below q_min
}


def landscape(with_answer: bool = True) -> Landscape:
    def strip(point: Point) -> Point:
        return point if with_answer else replace(point, answer_diversity=None)

    built = Landscape(3, post=strip(POST), pre=strip(Point(0.01, 1.3, 0.0, 0.0, 1.6)))
    built.intervals = {key: strip(point) for key, point in INTERVALS.items()}
    built.soup = {0.1: strip(Point(0.85, 0.6, 0.9, 0.76, 0.7)), 0.2: strip(Point(0.8, 0.9, 0.9, 0.70, 1.0))}
    built.meta = {"pair": "hand-made", "prompt_set": "x", "restore": "layer"}
    return built


def test_each_rule_picks_by_its_own_quality_and_diversity():
    shown = landscape()
    assert shown.usable_rules() == list(RULES) == ["strict", "paper", "answer"]
    assert shown.q_min(0.9, "answer") == pytest.approx(shown.q_min(0.9, "strict")) == pytest.approx(0.72)
    chosen = {rule: shown.best_interval(shown.q_min(0.9, rule), rule) for rule in RULES}
    assert chosen == {"strict": (0, 0), "paper": (1, 2), "answer": (0, 1)}
    # Lowering q_min far enough makes the highest answer D feasible, as max-subject-to says.
    assert shown.best_interval(0.4, "answer") == (2, 2)
    assert shown.best_alpha(0.72, "answer") == 0.1  # 0.2 has more answer D but strict Q 0.70 < 0.72
    assert shown.pareto_front("answer") == [(0, 1), (2, 2)]  # by strict Q, each with more answer D
    summary = shown.rule_summary(0.9, "answer")
    assert summary["best"]["interval"] == [0, 1] and summary["best"]["answer_diversity"] == 0.9
    assert summary["diversity_metric"] == "answer_diversity"


def test_a_landscape_without_answer_d_refuses_the_rule_clearly():
    old = landscape(with_answer=False)
    assert old.usable_rules() == ["strict", "paper"] and not old.has_answer
    with pytest.raises(RuleUnavailable, match="answer rule needs answer_diversity.*Sweep it again"):
        old.check_usable("answer")
    assert old.best_interval(0.72, "answer") is None  # never a crash, never a pick without its numbers
    assert "answer" not in old.summary(0.9)["rules"]
    with pytest.raises(RuleUnavailable):  # `best --rule answer`: exit 2 with that message
        best_text(old, "answer", 0.9)
    assert "selected (strict rule): [0, 0]" in best_text(old, "strict", 0.9)
    # The page falls back to the strict rule and says why.
    assert usable_rule(old, "answer") == "strict"
    assert NO_ANSWER in references_markdown(old, 0.9, "answer")
    assert "answer D" not in summary_markdown(old, 0.9)


def test_best_and_the_summaries_show_every_rules_pick():
    shown = landscape()
    text = best_text(shown, "answer", 0.9)
    assert text.endswith("selected (answer rule): [0, 1]")
    assert "answer rule: max answer D s.t. strict Q >= 0.90 x strict Q(post) = 0.7200" in text
    assert (
        "best interval [0, 0]" in text and "best interval [1, 2]" in text and "best interval [0, 1]" in text
    )
    table = summary_markdown(shown, 0.9)
    assert "| answer D |" in table.splitlines()[0]
    assert "| **SLR** | answer | 0.7200 | [0, 1] |" in table
    references = references_markdown(shown, 0.9, "answer")
    assert "Best SLR [0, 1]" in references and "answer rule: q_min = 0.90 × strict Q_post" in references
    assert "strict" in modes_markdown({"layer": landscape(False)}, 0.9, "answer")
    assert "answer D" in modes_markdown({"layer": shown}, 0.9, "answer")


def test_figures_put_answer_d_on_the_x_axis_and_mark_the_pick():
    shown = landscape()
    figure = figures.tradeoff_figure(shown, 0.72, (0, 1), rule="answer")
    every = next(t for t in figure.data if t.name == "all intervals")
    assert list(every.x) == [p.answer_diversity for _, p in sorted(shown.intervals.items())]
    assert figure.layout.meta["rule"] == "answer" and "answer D" in figure.layout.xaxis.title.text
    second = landscape()
    second.intervals = {
        k: replace(p, answer_diversity=p.answer_diversity + 0.1) for k, p in INTERVALS.items()
    }
    fronts = pair_figures.fronts_figure((shown, second), ("one", "two"), "answer", 0.9)
    pick = next(t for t in fronts.data if t.name == "one: pick [0, 1]")
    assert pick.marker.symbol == pair_figures.PICK_SYMBOLS["answer"] == "diamond"
    assert pick.x[0] == 0.9
    difference = Difference(shown, second, ("one", "two"))
    assert picks(shown, 0.9)["answer"] == (0, 1)
    assert "answer rule: [0, 1]" in picks_text(difference, 0.9)
    table = pair_figures.picks_markdown(difference, ("one", "two"), 0.9)
    assert "| one | answer | [0, 1] |" in table
    old = Difference(landscape(False), landscape(False))
    assert "answer rule: not available" in picks_text(old, 0.9)


def test_summary_text_lists_answer_d_only_when_computed():
    assert "answer D = 0.9000" in summary_text(landscape(), 0.9)
    assert "answer D" not in summary_text(landscape(False), 0.9)
