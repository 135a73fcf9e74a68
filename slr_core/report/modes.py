"""Restore modes side by side: each mode's pick at one q_min, their Pareto fronts.

Whole layers, attention only and MLP only each have a landscape of their own (cached_sweep keys them
apart); the post-trained reference is the same in all three, so one q_min applies to every mode.
"""

from __future__ import annotations

import plotly.graph_objects as go

from slr_core.report.figures import point_trace
from slr_core.report.style import DIVERSITY_TITLES, POST_COLOUR, PRE_COLOUR, SLR_COLOUR, base_layout
from slr_core.report.summary import format_number
from slr_core.slr.landscape import RULE_DIVERSITY, RULE_QUALITY, Landscape, check_rule

MODE_NAMES = {"layer": "whole layers", "attention": "attention only", "mlp": "MLP only"}
MODE_COLOURS = {"layer": SLR_COLOUR, "attention": "#1098ad", "mlp": "#ae3ec9"}


def modes_markdown(landscapes: dict[str, Landscape], fraction: float, rule: str) -> str:
    """A table: per restore mode, its best interval at the shared q_min, with quality, D and stop rate."""
    check_rule(rule)
    shown = {mode: ls for mode, ls in landscapes.items() if ls.post is not None}
    if not shown:
        return ""
    # The asked rule where every mode has its numbers, else the strict rule, else the paper rule.
    rule = next(r for r in (rule, "strict", "paper") if all(r in ls.usable_rules() for ls in shown.values()))
    quality = "Q" if rule == "paper" else "strict Q"
    diversity = "answer D" if rule == "answer" else "D"
    lines = [
        f"| restore | best interval | {quality} | {diversity} | stop rate | swept |",
        "|---|---|---|---|---|---|",
    ]
    total = next(iter(shown.values())).num_layers * (next(iter(shown.values())).num_layers + 1) // 2
    q_min = None
    for mode, landscape in shown.items():
        q_min = landscape.q_min(fraction, rule)
        best = landscape.best_interval(q_min, rule)
        point = landscape.intervals.get(best) if best else None
        where = f"[{best[0]}, {best[1]}]" if best else "none reaches q_min"
        numbers = (
            ["", "", ""]
            if point is None
            else [
                format_number(point.rule_quality(rule), 3),
                format_number(point.rule_diversity(rule), 3),
                format_number(point.stop, 3),
            ]
        )
        lines.append(
            f"| {MODE_NAMES[mode]} | {where} | "
            + " | ".join(numbers)
            + f" | {len(landscape.intervals)} / {total} |"
        )
    return (
        "\n".join(lines) + f"\n\nAt the same q_min = {format_number(q_min, 3)} ({rule} rule) for every mode."
    )


def modes_figure(
    landscapes: dict[str, Landscape], rule: str, q_min: float | None = None, height: int = 420
) -> go.Figure:
    """The Pareto fronts (rule quality vs D) of whole-layer, attention-only and MLP-only restoration."""
    metric = RULE_QUALITY[check_rule(rule)]
    symbol = {"quality": "Q", "strict_quality": "strict Q"}[metric]
    figure = go.Figure()
    hover = f"%{{text}}<br>{symbol} = %{{y:.3f}}<br>D = %{{x:.3f}}<extra></extra>"
    for mode, landscape in landscapes.items():
        front = landscape.pareto_front(rule) if landscape.intervals else []
        points = [landscape.intervals[key] for key in front]
        figure.add_trace(
            go.Scatter(
                x=[point.rule_diversity(rule) for point in points],
                y=[getattr(point, metric) for point in points],
                mode="lines+markers",
                name=f"{MODE_NAMES[mode]} ({len(landscape.intervals)} intervals)",
                line={"color": MODE_COLOURS[mode], "width": 2},
                marker={"size": 6, "color": MODE_COLOURS[mode]},
                text=[f"[{start}, {end}] {MODE_NAMES[mode]}" for start, end in front],
                hovertemplate=hover,
            )
        )
    references = next((ls for ls in landscapes.values() if ls.post is not None), None)
    for name, marker, colour in (("post", "diamond", POST_COLOUR), ("pre", "square", PRE_COLOUR)):
        point = getattr(references, name) if references is not None else None
        value = getattr(point, metric) if point is not None else None
        if value is not None:
            figure.add_trace(
                point_trace(f"{name}-trained", point.rule_diversity(rule), value, marker, colour, 14, symbol)
            )
    shapes = []
    if q_min is not None:
        line = {"color": "#555", "width": 1, "dash": "dash"}
        shapes.append(
            {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": q_min, "y1": q_min, "line": line}
        )
    figure.update_layout(
        **base_layout(f"Pareto fronts by restore mode ({rule} rule; dashed: q_min)", height),
        xaxis={"title": {"text": DIVERSITY_TITLES[RULE_DIVERSITY[rule]]}},
        yaxis={"title": {"text": symbol}},
        legend={"orientation": "h", "y": -0.18, "x": 0, "font": {"size": 11}},
        shapes=shapes,
        meta={"rule": rule, "modes": list(landscapes)},
    )
    return figure
