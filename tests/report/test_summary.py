"""The one selection formatter (slr_core.summary) and the page's side panel, on hand-made landscapes."""

from __future__ import annotations

import pytest
from strict_landscapes import (
    PAPER_ALPHA,
    PAPER_PICK,
    STRICT_ALPHA,
    STRICT_PICK,
    paper_only_landscape,
    two_rule_landscape,
)

from slr_core.report.summary import (
    NOT_STRICT,
    references_markdown,
    summary_markdown,
    summary_rows,
    summary_text,
    sweep_status,
    usable_rule,
)
from slr_core.slr.landscape import Landscape, Point


def test_rows_follow_landscape_summary_for_both_rules():
    landscape = two_rule_landscape()
    rows = summary_rows(landscape, 0.9)
    picks = {row["rule"]: row for row in rows if row["kind"] == "slr"}
    assert picks["strict"]["interval"] == STRICT_PICK and picks["paper"]["interval"] == PAPER_PICK
    for rule, row in picks.items():
        found = landscape.summary(0.9)["rules"][rule]
        assert row["q_min"] == pytest.approx(found["q_min"])
        assert [row[m] for m in ("quality", "diversity", "stop", "strict_quality")] == [
            found["best"][m] for m in ("quality", "diversity", "stop", "strict_quality")
        ]
    soups = {row["rule"]: row["alpha"] for row in rows if row["kind"] == "soup"}
    # Here answer D equals D (tests/strict_landscapes.py), so the answer rule picks as the strict one does.
    assert soups == {"strict": STRICT_ALPHA, "paper": PAPER_ALPHA, "answer": STRICT_ALPHA}
    assert picks["answer"]["interval"] == STRICT_PICK
    controls = [(row["rule"], row["label"], row["interval"]) for row in rows if row["kind"] == "control"]
    assert ("strict", "SLR-Early", (0, 0)) in controls and ("paper", "SLR-Late", (2, 3)) in controls
    assert [row["kind"] for row in rows[:2]] == ["post", "pre"]
    assert summary_rows(Landscape(4), 0.9) == []


def test_markdown_puts_both_picks_side_by_side():
    text = summary_markdown(two_rule_landscape(), 0.9)
    assert (
        text.splitlines()[0] == "| model | rule | q_min | interval / α | Q | strict Q | stop | D | answer D |"
    )
    assert "| **SLR** | strict | 0.6480 | [1, 1] | 0.7500 | 0.6750 | 0.9000 | 1.0000 | 1.0000 |" in text
    assert "| **SLR** | paper | 0.7200 | [0, 1] | 0.7800 | 0.2340 | 0.3000 | 1.5000 | 1.5000 |" in text
    assert "| Proxy-Soup | strict | 0.6480 | α = 0.25 |" in text
    assert "strict rule: max D s.t. strict Q >= 0.90 x strict Q(post) = 0.6480" in text
    assert "SLR-Early" in text and "SLR-Early" not in summary_markdown(
        two_rule_landscape(), 0.9, controls=False
    )
    assert "| **SLR** | strict | 0.648 | [1, 1] |" in summary_markdown(two_rule_landscape(), 0.9, digits=3)


def test_text_keeps_the_cli_lines_and_adds_the_strict_rule():
    text = summary_text(two_rule_landscape(), 0.9)
    lines = text.splitlines()
    assert (
        lines[0]
        == "post-trained: Q_CRC = 0.8000, strict Q = 0.7200, stop = 0.9000, D_CRC = 0.5000, answer D = 0.5000"
    )
    assert (
        "  best interval [1, 1]: Q_CRC = 0.7500, strict Q = 0.6750, stop = 0.9000, D_CRC = 1.0000, answer D = 1.0000"
        in lines
    )
    assert (
        "  best interval [0, 1]: Q_CRC = 0.7800, strict Q = 0.2340, stop = 0.3000, D_CRC = 1.5000, answer D = 1.5000"
        in lines
    )
    assert "  Proxy-Soup best alpha = 0.50: " in text
    assert lines.index("strict rule: max D s.t. strict Q >= 0.90 x strict Q(post) = 0.6480") < lines.index(
        "paper rule: max D s.t. Q >= 0.90 x Q(post) = 0.7200 (first-token rule)"
    )
    assert NOT_STRICT not in text


def test_a_landscape_without_strict_numbers_shows_the_paper_rule_only_and_says_so():
    landscape = paper_only_landscape()
    markdown, text = summary_markdown(landscape, 0.9), summary_text(landscape, 0.9)
    assert "| model | rule | q_min | interval / α | Q | D |" in markdown and "| strict |" not in markdown
    assert NOT_STRICT in markdown and NOT_STRICT in text
    assert "post-trained: Q_CRC = 0.8000, D_CRC = 0.5000" in text
    assert "  best interval [0, 1]: Q_CRC = 0.7800, D_CRC = 1.5000" in text
    assert (
        usable_rule(landscape, "strict") == "paper"
        and usable_rule(two_rule_landscape(), "strict") == "strict"
    )
    with pytest.raises(ValueError, match="Unknown selection rule"):
        usable_rule(landscape, "loose")


def test_a_rule_that_selects_nothing_says_so():
    landscape = Landscape(4, post=Point(0.8, 0.5, 0.9, 0.72), pre=Point(0.3, 1.0, 0.5, 0.15))
    landscape.intervals[(0, 0)] = Point(0.1, 1.0, 0.5, 0.05)
    assert "no interval reaches q_min = 0.6480" in summary_text(landscape, 0.9)
    assert "| SLR: no interval reaches q_min | strict | 0.6480 |" in summary_markdown(landscape, 0.9)
    assert "No swept interval reaches q_min yet." in references_markdown(landscape, 0.9, "strict")


def test_references_show_the_chosen_rule_and_the_selection():
    landscape = two_rule_landscape()
    strict = references_markdown(landscape, 0.9, "strict", selected=(2, 3))
    assert "| **Best SLR [1, 1]** ★ | 0.750 | 0.675 | 0.900 | 1.000 |" in strict
    assert "Proxy-Soup α = 0.25" in strict and "Selected [2, 3] ▢" in strict
    assert "strict rule: q_min = 0.90 × strict Q_post = **0.648**" in strict
    assert "10 / 10 intervals · 5 / 21 soup α" in strict
    paper = references_markdown(landscape, 0.9, "paper")
    assert "**Best SLR [0, 1]** ★" in paper and "paper rule: q_min = 0.90 × Q_post = **0.720**" in paper
    shown = references_markdown(paper_only_landscape(), 0.9, "strict")  # falls back to the paper rule
    assert "**Best SLR [0, 1]** ★" in shown and NOT_STRICT in shown
    assert references_markdown(None, 0.9, "strict") == "No pair loaded yet."


def test_sweep_status_counts_results():
    landscape = two_rule_landscape()
    assert sweep_status(landscape, running=True) == "Sweeping: 17 / 33 results (post, pre, intervals, soup)."
    assert sweep_status(Landscape(4), running=False).startswith("Waiting to sweep: 0 / 33")


def test_a_low_stop_pick_says_so_next_to_the_star_on_the_maps_and_in_the_compare_header():
    from slr_core.report.figures import heatmap_figure
    from slr_core.serve.session import SessionView
    from slr_core.slr.hybrid import interval_restoration

    landscape = two_rule_landscape()  # the paper pick [0, 1] stops 0.3 of the time, the strict pick 0.9
    paper = references_markdown(landscape, 0.9, "paper")
    assert "★ [0, 1]: ⚠ Low stop rate (0.300)" in paper and "only 30.0% of the time" in paper
    assert "Low stop rate" not in references_markdown(landscape, 0.9, "strict")
    for metric in ("strict_quality", "diversity", "stop"):
        notes = heatmap_figure(landscape, metric, PAPER_PICK).layout.annotations
        assert [(n.x, n.y, n.text) for n in notes] == [(1, 0, "⚠ stop 0.300: replies rarely end")]
        assert not heatmap_figure(landscape, metric, STRICT_PICK).layout.annotations
    # A first-look cell has no stop rate yet: no warning rather than a guess.
    landscape.intervals[PAPER_PICK] = Point(0.78, 1.5)
    assert not heatmap_figure(landscape, "quality", PAPER_PICK).layout.annotations
    assert "Low stop rate" not in references_markdown(landscape, 0.9, "paper")
    # The compare header gets the numbers of exactly the restoration the landscape measured.
    view = SessionView(landscape=two_rule_landscape())
    assert view.crc_point(interval_restoration(0, 1)) == view.landscape.intervals[PAPER_PICK]
    assert view.crc_point(interval_restoration(0, 1, fraction=0.5)) is None
    assert view.crc_point(interval_restoration(0, 1, mode="mlp")) is None
