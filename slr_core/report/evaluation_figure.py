"""The downstream evaluation's figure (the paper's Figure 3 style), with a stable colour per method."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from slr_core.report.style import POST_COLOUR, PRE_COLOUR, SLR_COLOUR, SOUP_COLOUR, base_layout


def evaluation_figure(bars: dict[str, list[dict]]) -> go.Figure:
    """Figure 3 style: one panel per metric, methods side by side at each temperature, std as error bars.

    `bars` maps a metric to rows {method, temperature, value, std} (slr_core.downstream.evaluation.figure_data).
    """
    metrics = [metric for metric, rows in bars.items() if rows]
    if not metrics:
        return go.Figure().update_layout(**base_layout("No evaluation results yet", 300))
    methods = list(dict.fromkeys(row["method"] for metric in metrics for row in bars[metric]))
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=metrics, horizontal_spacing=0.07)
    for column, metric in enumerate(metrics, start=1):
        for method in methods:
            rows = [row for row in bars[metric] if row["method"] == method]
            figure.add_trace(
                go.Bar(
                    x=[f"T = {row['temperature']}" for row in rows],
                    y=[_number(row.get("value")) for row in rows],
                    error_y={
                        "type": "data",
                        "array": [_number(row.get("std")) for row in rows],
                        "thickness": 1,
                    },
                    name=method,
                    legendgroup=method,
                    showlegend=column == 1,
                    marker={"color": method_colour(method, methods)},
                    hovertemplate=f"{method}<br>%{{x}}<br>{metric} = %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=column,
            )
    figure.update_layout(
        **base_layout("Downstream evaluation (mean over items; bars: std)", 380),
        barmode="group",
        legend={"orientation": "h", "y": -0.15, "x": 0},
    )
    return figure


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return number if np.isfinite(number) else float("nan")


def method_colour(method: str, methods: list[str]) -> str:
    """A stable colour per method label: post blue, pre grey, SLR orange, Proxy-Soup green."""
    lowered = method.lower()
    for prefix, colour in (
        ("post", POST_COLOUR),
        ("pre", PRE_COLOUR),
        ("proxy", SOUP_COLOUR),
        ("soup", SOUP_COLOUR),
        ("slr-early", "#f59f00"),
        ("slr-late", "#ae3ec9"),
        ("slr", SLR_COLOUR),
    ):
        if lowered.startswith(prefix):
            return colour
    palette = ["#5f3dc4", "#0b7285", "#5c940d", "#862e9c"]
    return palette[methods.index(method) % len(palette)] if method in methods else palette[0]
