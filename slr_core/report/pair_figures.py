"""Figures of two pairs on one interval grid: difference maps, both Pareto fronts, both picks."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from slr_core.report.difference import DIFF_METRICS, Difference, picks
from slr_core.report.figures import point_trace
from slr_core.report.style import DIVERSITY_TITLES, METRIC_SYMBOLS, SLR_COLOUR, base_layout, grid_axes
from slr_core.report.summary import format_number
from slr_core.slr.landscape import RULE_DIVERSITY, RULE_QUALITY, RULES, Landscape, check_rule

PAIR_COLOURS = (SLR_COLOUR, "#1098ad")  # first pair, second pair
PICK_SYMBOLS = {"strict": "star", "paper": "x", "answer": "diamond"}


def difference_heatmap(
    difference: Difference, metric: str, names: tuple[str, str], height: int = 400
) -> go.Figure:
    """N x N map of second - first for one metric, on a diverging scale centred on 0."""
    if metric not in DIFF_METRICS:
        raise ValueError(f"metric must be one of {', '.join(DIFF_METRICS)}, got {metric!r}")
    grid = difference.matrix(metric)
    size = difference.first.num_layers
    finite = grid[~np.isnan(grid)]
    # A symmetric range, so white means "no difference" on every map.
    span = float(np.abs(finite).max()) if finite.size else 0.0
    span = span if span > 0 else 1e-9
    symbol = METRIC_SYMBOLS[metric]
    texts = [
        [
            ""
            if math.isnan(grid[i, j])
            else f"<b>[{i}, {j}]</b><br>Δ{symbol} = {grid[i, j]:+.4f}"
            f"<br>{names[0]}: {getattr(difference.first.intervals[(i, j)], metric):.4f}"
            f"<br>{names[1]}: {getattr(difference.second.intervals[(i, j)], metric):.4f}"
            for j in range(size)
        ]
        for i in range(size)
    ]
    layers = list(range(size))
    figure = go.Figure(
        go.Heatmap(
            z=grid,
            x=layers,
            y=layers,
            text=texts,
            hovertemplate="%{text}<extra></extra>",
            hoverongaps=False,
            colorscale="RdBu",
            zmid=0.0,
            zmin=-span,
            zmax=span,
            colorbar={"title": {"text": f"Δ{symbol}"}, "thickness": 12, "len": 0.9},
            xgap=1,
            ygap=1,
        )
    )
    figure.update_layout(
        **base_layout(f"Δ{symbol}: {names[1]} − {names[0]}", height),
        **grid_axes(size),
        meta={"metric": metric, "num_layers": size, "kind": "difference"},
        dragmode=False,
    )
    return figure


def fronts_figure(
    landscapes: tuple[Landscape, Landscape],
    names: tuple[str, str],
    rule: str,
    fraction: float,
    height: int = 420,
) -> go.Figure:
    """Both pairs' Pareto fronts (rule quality vs D), their post-trained points and picks on one plot."""
    metric = RULE_QUALITY[check_rule(rule)]
    symbol = METRIC_SYMBOLS[metric]
    figure = go.Figure()
    hover = f"%{{text}}<br>{symbol} = %{{y:.3f}}<br>D = %{{x:.3f}}<extra></extra>"
    for landscape, name, colour in zip(landscapes, names, PAIR_COLOURS, strict=True):
        front = landscape.pareto_front(rule)
        points = [landscape.intervals[key] for key in front]
        figure.add_trace(
            go.Scatter(
                x=[p.rule_diversity(rule) for p in points],
                y=[getattr(p, metric) for p in points],
                mode="lines+markers",
                name=f"{name}: Pareto front",
                line={"color": colour, "width": 2},
                marker={"size": 6, "color": colour},
                text=[f"{name} [{i}, {j}]" for i, j in front],
                hovertemplate=hover,
            )
        )
        if landscape.post is not None:
            post = landscape.post
            figure.add_trace(
                point_trace(
                    f"{name}: post-trained",
                    post.rule_diversity(rule),
                    getattr(post, metric),
                    "diamond",
                    colour,
                    13,
                    symbol,
                )
            )
        best = picks(landscape, fraction).get(rule)
        if best is not None:
            point = landscape.intervals[best]
            figure.add_trace(
                point_trace(
                    f"{name}: pick [{best[0]}, {best[1]}]",
                    point.rule_diversity(rule),
                    getattr(point, metric),
                    PICK_SYMBOLS[rule],
                    colour,
                    16,
                    symbol,
                )
            )
    figure.update_layout(
        **base_layout(f"Pareto fronts of both pairs ({rule} rule)", height),
        xaxis={"title": {"text": DIVERSITY_TITLES[RULE_DIVERSITY[rule]]}},
        yaxis={"title": {"text": symbol}},
        legend={"orientation": "h", "y": -0.2, "x": 0, "font": {"size": 11}},
        meta={"rule": rule, "pairs": list(names), "kind": "fronts"},
    )
    return figure


def picks_markdown(difference: Difference, names: tuple[str, str], fraction: float) -> str:
    """A table: each pair's pick under each rule with its numbers, then where D falls most."""
    lines = [
        "| pair | rule | pick | Q | strict Q | stop | D | answer D | D of post-trained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for landscape, name in zip((difference.first, difference.second), names, strict=True):
        chosen = picks(landscape, fraction)
        for rule in RULES:
            best = chosen.get(rule)
            post = landscape.post.diversity if landscape.post is not None else None
            if rule not in chosen:
                lines.append(
                    f"| {name} | {rule} | not available (not computed) | | | | | | {format_number(post, 3)} |"
                )
                continue
            if best is None:
                lines.append(f"| {name} | {rule} | none reaches q_min | | | | | | {format_number(post, 3)} |")
                continue
            p = landscape.intervals[best]
            values = (p.quality, p.strict_quality, p.stop, p.diversity, p.answer_diversity, post)
            numbers = [format_number(v, 3) for v in values]
            lines.append(f"| {name} | {rule} | [{best[0]}, {best[1]}] | " + " | ".join(numbers) + " |")
    drops = ", ".join(f"[{i}, {j}] ({delta:+.3f})" for (i, j), delta in difference.largest("diversity"))
    return (
        "\n".join(lines)
        + f"\n\nEach rule at q_min = {format_number(fraction, 2)} × the pair's own post-trained quality. "
        + f"Where D falls most from {names[0]} to {names[1]}: {drops}."
    )
