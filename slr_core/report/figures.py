"""Plotly figures of a pair's CRC landscape, its layer drift and samples (evaluation_figure.py: results)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import plotly.graph_objects as go

from slr_core.report.style import (
    COLOUR_SCALES,
    DIVERSITY_TITLES,
    LAMBDA_COLOUR,
    METRIC_SYMBOLS,
    METRIC_TITLES,
    POST_COLOUR,
    PRE_COLOUR,
    SELECTED_COLOUR,
    SLR_COLOUR,
    SOUP_COLOUR,
    base_layout,
    grid_axes,
)
from slr_core.report.summary import format_number
from slr_core.slr.landscape import (
    DEFAULT_RULE,
    METRICS,
    RULE_DIVERSITY,
    RULE_QUALITY,
    Landscape,
    Point,
    check_rule,
    low_stop,
)


def _interval_shape(interval: tuple[int, int], colour: str, dash: str = "solid") -> dict:
    start, end = interval
    return {
        "type": "rect",
        "x0": end - 0.5,
        "x1": end + 0.5,
        "y0": start - 0.5,
        "y1": start + 0.5,
        "line": {"color": colour, "width": 3, "dash": dash},
        "fillcolor": "rgba(0,0,0,0)",
    }


def _value(value: float | None, reference: float | None) -> str:
    if value is None:
        return "not computed"
    return f"{value:.3f}" + (f" ({value - reference:+.3f} vs post)" if reference is not None else "")


def hover_texts(landscape: Landscape) -> list[list[str]]:
    """Per cell [i][j]: the interval, then Q, strict Q, stop rate and D, each with its change vs post."""
    size = landscape.num_layers
    texts = [["" for _ in range(size)] for _ in range(size)]
    post, half = landscape.post, half_precision(landscape)
    for (start, end), point in landscape.intervals.items():
        lines = [f"<b>[{start}, {end}]</b>: restores {end - start + 1} layer(s)"]
        for metric in METRICS:
            reference = getattr(post, metric) if post is not None else None
            lines.append(f"{METRIC_SYMBOLS[metric]} = {_value(getattr(point, metric), reference)}")
        if (start, end) in landscape.coarse:
            lines.append(f"<i>first look: {_coarse_prompts(landscape)}, Q and D only; refining</i>")
        if half:
            lines.append(f"<i>{half}</i>")
        texts[start][end] = "<br>".join(lines)
    return texts


def half_precision(landscape: Landscape) -> str:
    """'computed in bfloat16 (half precision)' for a half-precision landscape, else ''."""
    dtype = landscape.meta.get("dtype")
    return f"computed in {dtype} (half precision)" if dtype in ("bfloat16", "float16") else ""


def _coarse_prompts(landscape: Landscape) -> str:
    return f"{landscape.meta.get('coarse_prompts', '?')} of {landscape.meta.get('num_prompts', '?')} prompts"


def heatmap_figure(
    landscape: Landscape,
    metric: str,
    best: tuple[int, int] | None = None,
    selected: tuple[int, int] | None = None,
    height: int = 430,
    prompt_set: str | None = None,
) -> go.Figure:
    """N x N map of one of METRICS: start i on y (top down), end j on x, only i <= j coloured; the
    prompt set's name in the title when given (another set than the paper's)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    size = landscape.num_layers
    layers = list(range(size))
    z = landscape.matrix(metric)
    title = METRIC_TITLES[metric]
    if landscape.coarse:  # strict Q and stop come with the full pass; Q and D are coarse until then
        title = f"{title} (first look on {_coarse_prompts(landscape)}; refining)"
    elif landscape.intervals and np.isnan(z).all():
        title = f"{title} (not computed for this landscape)"
    if half_precision(landscape):
        title = f"{title} · {half_precision(landscape)}"
    if prompt_set:
        title = f"{title} · prompts: {prompt_set}"
    heatmap = go.Heatmap(
        z=z,
        x=layers,
        y=layers,
        text=hover_texts(landscape),
        hovertemplate="%{text}<extra></extra>",
        hoverongaps=False,
        colorscale=COLOUR_SCALES[metric],
        colorbar={"title": {"text": METRIC_SYMBOLS[metric]}, "thickness": 12, "len": 0.9},
        xgap=1,
        ygap=1,
        **({"zmin": 0.0, "zmax": 1.0} if metric == "stop" else {}),
    )
    figure = go.Figure(heatmap)
    shapes = []
    if best is not None:
        figure.add_trace(
            go.Scatter(
                x=[best[1]],
                y=[best[0]],
                mode="markers",
                marker={
                    "symbol": "star",
                    "size": 15,
                    "color": "white",
                    "line": {"color": "black", "width": 1.5},
                },
                name=f"best [{best[0]}, {best[1]}]",
                hoverinfo="skip",
                showlegend=False,
            )
        )
    if best is not None and low_stop(landscape.intervals.get(best)):
        # Said next to the star, on every map: the pick's replies mostly run on after the answer.
        stop = landscape.intervals[best].stop
        text, offset = (
            f"⚠ stop {format_number(stop, 3)}: replies rarely end",
            (-60 if best[1] > size / 2 else 60),
        )
        style = {"bgcolor": "rgba(255, 244, 214, 0.95)", "bordercolor": "#b45309", "name": "low-stop"}
        figure.add_annotation(
            x=best[1], y=best[0], text=text, arrowhead=2, ax=offset, ay=-28 if best[0] > 1 else 28,
            font={"size": 11, "color": "#7c2d12"}, **style,
        )  # fmt: skip
    if selected is not None:
        shapes.append(_interval_shape(selected, SELECTED_COLOUR))
    figure.update_layout(
        **base_layout(title, height),
        **grid_axes(size),
        shapes=shapes,
        meta={
            "num_layers": size,
            "metric": metric,
            "filled": len(landscape.intervals),
            "coarse": sum(isinstance(key, tuple) for key in landscape.coarse),
        },
        dragmode=False,
    )
    return figure


def tradeoff_figure(
    landscape: Landscape,
    q_min: float | None = None,
    best: tuple[int, int] | None = None,
    selected: tuple[int, int] | None = None,
    height: int = 460,
    rule: str | None = None,
    lambda_slice: tuple[str, dict[float, Point]] | None = None,
) -> go.Figure:
    """The rule's quality vs D of every interval: Pareto front, references, Proxy-Soup, fixed-start slices,
    and optionally a restoration's lambda slice (its label, and its point at each fraction lambda).

    `rule` picks the quality on the y axis (strict quality or first-token Q) and the Pareto front;
    by default strict where the landscape has the strict numbers, else the paper's first-token rule.
    """
    rule = check_rule(rule) if rule else DEFAULT_RULE if landscape.has_strict else "paper"
    metric = RULE_QUALITY[rule]
    x_of = lambda point: point.rule_diversity(rule)  # noqa: E731 (answer D under the answer rule)
    symbol = METRIC_SYMBOLS[metric]

    def y_of(point) -> float:
        value = getattr(point, metric)
        return float("nan") if value is None else value

    hover = f"%{{text}}<br>{symbol} = %{{y:.3f}}<br>D = %{{x:.3f}}<extra></extra>"
    figure = go.Figure()
    intervals = sorted(landscape.intervals.items())
    if intervals:
        figure.add_trace(
            go.Scatter(
                x=[x_of(point) for _, point in intervals],
                y=[y_of(point) for _, point in intervals],
                mode="markers",
                name="all intervals",
                marker={
                    "size": 7,
                    "opacity": 0.5,
                    "color": [end - start + 1 for (start, end), _ in intervals],
                    "colorscale": "Blues",
                    "colorbar": {"title": {"text": "layers<br>restored"}, "thickness": 10, "len": 0.6},
                },
                text=[f"[{start}, {end}]" for (start, end), _ in intervals],
                hovertemplate=hover,
            )
        )
        front = landscape.pareto_front(rule)
        figure.add_trace(
            go.Scatter(
                x=[x_of(landscape.intervals[key]) for key in front],
                y=[y_of(landscape.intervals[key]) for key in front],
                mode="lines+markers",
                name="Pareto front",
                line={"color": SLR_COLOUR, "width": 1.5, "dash": "dot"},
                marker={"size": 6, "color": SLR_COLOUR},
                text=[f"[{start}, {end}]" for start, end in front],
                hovertemplate="Pareto " + hover,
            )
        )
    slice_starts = [interval[0] for interval in (best, selected) if interval is not None]
    for start in dict.fromkeys(slice_starts):
        row = sorted((key, point) for key, point in landscape.intervals.items() if key[0] == start)
        if len(row) < 2:
            continue
        labels = [f"[{key[0]}, {key[1]}]" for key, _ in row]
        line = {"width": 1.5}
        figure.add_trace(
            curve_trace([p for _, p in row], labels, y_of, f"fixed start i = {start}", hover, line, x_of)
        )
    if landscape.soup:
        alphas = sorted(landscape.soup)
        points, labels = [landscape.soup[a] for a in alphas], [f"α = {a:.2f}" for a in alphas]
        line = {"color": SOUP_COLOUR, "width": 2}
        figure.add_trace(
            curve_trace(points, labels, y_of, "Proxy-Soup (α = 0 … 1)", "Soup " + hover, line, x_of)
        )
    if lambda_slice is not None and lambda_slice[1]:
        label, points = lambda_slice[0], sorted(lambda_slice[1].items())
        labels, line = (
            [f"λ = {f:.2f}" for f, _ in points],
            {"color": LAMBDA_COLOUR, "width": 2, "dash": "dash"},
        )
        name = f"{label}, λ = 0 … 1"
        figure.add_trace(
            curve_trace([p for _, p in points], labels, y_of, name, "λ slice " + hover, line, x_of)
        )
    for name, point, marker, colour in (
        ("post-trained", landscape.post, "diamond", POST_COLOUR),
        ("pre-trained", landscape.pre, "square", PRE_COLOUR),
    ):
        if point is not None:
            figure.add_trace(point_trace(name, x_of(point), y_of(point), marker, colour, 14, symbol))
    for label, interval, marker, colour in (
        ("best", best, "star", SLR_COLOUR),
        ("selected", selected, "circle-open", SELECTED_COLOUR),
    ):
        if interval is not None and interval in landscape.intervals:
            point = landscape.intervals[interval]
            name = f"{label} [{interval[0]}, {interval[1]}]"
            figure.add_trace(point_trace(name, x_of(point), y_of(point), marker, colour, 16, symbol))
    shapes, annotations = [], []
    if q_min is not None:
        shapes.append(
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": q_min,
                "y1": q_min,
                "line": {"color": "#555", "width": 1, "dash": "dash"},
            }
        )
        annotations.append(
            {
                "xref": "paper",
                "x": 0,
                "y": q_min,
                "text": f"q_min = {q_min:.3g} ({rule} rule)",
                "showarrow": False,
                "xanchor": "left",
                "yanchor": "bottom",
                "font": {"size": 11, "color": "#555"},
            }
        )
    y_title = (
        "strict Q (valid answer, then the reply ends)" if rule == "strict" else "Q (mass on valid answers)"
    )
    figure.update_layout(
        **base_layout(
            " · ".join(
                filter(
                    None,
                    [f"{symbol} vs diversity of every interval ({rule} rule)", half_precision(landscape)],
                )
            ),
            height,
        ),
        xaxis={"title": {"text": DIVERSITY_TITLES[RULE_DIVERSITY[rule]]}},
        yaxis={"title": {"text": y_title}},
        legend={"orientation": "h", "y": -0.18, "x": 0, "font": {"size": 11}},
        shapes=shapes,
        annotations=annotations,
        meta={"rule": rule, "quality_metric": metric},
    )
    return figure


def curve_trace(
    points: list, labels: list[str], y_of, name: str, hover: str, line: dict, x_of=None
) -> go.Scatter:
    """A line through landscape points (x_of(point), default D, on x; y_of(point) on y), one label each."""
    marker = {"size": 5, **({"color": line["color"]} if "color" in line else {})}
    return go.Scatter(
        x=[(x_of or (lambda p: p.diversity))(point) for point in points],
        y=[y_of(point) for point in points],
        mode="lines+markers",
        name=name,
        line=line,
        marker=marker,
        text=labels,
        hovertemplate=hover,
    )


def point_trace(
    name: str, x: float, y: float, marker: str, colour: str, size: int, quality: str = "Q"
) -> go.Scatter:
    return go.Scatter(
        x=[x],
        y=[y],
        mode="markers",
        name=name,
        marker={"symbol": marker, "size": size, "color": colour, "line": {"color": "white", "width": 1}},
        hovertemplate=f"{name}<br>{quality} = %{{y:.3f}}<br>D = %{{x:.3f}}<extra></extra>",
    )


def drift_figure(
    drifts: list[float], interval: tuple[int, int] | None = None, height: int = 460
) -> go.Figure:
    """Bars of per-layer relative drift; the layers of `interval` highlighted."""
    layers = list(range(len(drifts)))
    inside = [interval is not None and interval[0] <= layer <= interval[1] for layer in layers]
    colours = [SLR_COLOUR if flag else POST_COLOUR for flag in inside]
    figure = go.Figure(
        go.Bar(
            x=layers,
            y=drifts,
            marker={"color": colours},
            hovertemplate="layer %{x}<br>drift = %{y:.4f}<extra></extra>",
        )
    )
    title = "Per-layer drift ‖W_post − W_pre‖ / ‖W_pre‖"
    if interval is not None:
        title += f" (orange: restored [{interval[0]}, {interval[1]}])"
    figure.update_layout(
        **base_layout(title, height),
        xaxis={
            "title": {"text": "decoder layer"},
            "tickmode": "linear",
            "dtick": max(1, math.ceil(len(drifts) / 12)),
        },
        yaxis={"title": {"text": "relative Frobenius norm"}, "rangemode": "tozero"},
        bargap=0.15,
    )
    return figure


def crc_histogram(
    alone: Counter, extra: Counter, invalid: int, valid: tuple[str, ...], title: str = "", height: int = 240
) -> go.Figure:
    """Stacked bars per valid answer (alone / followed by more text), and one bar of invalid replies."""
    labels = [*valid, "invalid"]
    bars = [
        go.Bar(
            x=labels,
            y=[alone.get(c, 0) for c in valid] + [0],
            name="answer alone",
            marker={"color": SLR_COLOUR},
        ),
        go.Bar(
            x=labels,
            y=[extra.get(c, 0) for c in valid] + [0],
            name="answer, then more text",
            marker={"color": SLR_COLOUR, "pattern": {"shape": "/"}, "opacity": 0.55},
        ),
        go.Bar(x=labels, y=[0] * len(valid) + [invalid], name="invalid", marker={"color": PRE_COLOUR}),
    ]
    for bar in bars:
        bar.hovertemplate = f"%{{x}} ({bar.name}): %{{y}}<extra></extra>"
    layout = base_layout(title, height)
    layout["margin"] = {"l": 40, "r": 8, "t": 36 if title else 8, "b": 64}
    return go.Figure(bars).update_layout(
        **layout,
        barmode="stack",
        showlegend=True,
        legend={"orientation": "h", "y": -0.25, "font": {"size": 10}, "traceorder": "normal"},
        xaxis={"type": "category"},
        yaxis={"title": {"text": "samples"}, "rangemode": "tozero", "tickformat": "d"},
        bargap=0.2,
    )
