"""The figures' shared look: colours, metric names, fonts, the base layout and the interval-map axes."""

from __future__ import annotations

import math

POST_COLOUR = "#1f6fb4"
PRE_COLOUR = "#8c8c8c"
SLR_COLOUR = "#d9480f"
SOUP_COLOUR = "#2b8a3e"
SELECTED_COLOUR = "#111111"
LAMBDA_COLOUR = "#7048e8"

METRIC_TITLES = {
    "quality": "CRC quality Q: probability mass on valid first answers",
    "strict_quality": "Strict quality: a valid answer, then the reply ends",
    "stop": "Stop rate: the reply ends right after a valid answer",
    "diversity": "CRC diversity D: entropy over valid answers",
    "answer_diversity": "Answer diversity: entropy over answers that then end the reply",
}
METRIC_SYMBOLS = {
    "quality": "Q", "strict_quality": "strict Q", "stop": "stop", "diversity": "D", "answer_diversity": "answer D"
}  # fmt: skip
COLOUR_SCALES = {
    "quality": "Viridis", "strict_quality": "Viridis", "stop": "Cividis", "diversity": "Magma",
    "answer_diversity": "Magma",
}  # fmt: skip
DIVERSITY_TITLES = {
    "diversity": "D (diversity over valid answers)",
    "answer_diversity": "answer D (diversity over whole answers that end the reply)",
}
FONT = {"family": "Inter, system-ui, sans-serif", "size": 12}


def base_layout(title: str, height: int) -> dict:
    """Title, height, margins, font and template shared by every figure."""
    return {
        "title": {"text": title, "x": 0.02, "xanchor": "left", "font": {"size": 14}},
        "height": height,
        "margin": {"l": 56, "r": 16, "t": 44, "b": 48},
        "font": FONT,
        "template": "plotly_white",
    }


def grid_axes(size: int) -> dict:
    """The x (end layer j) and y (start layer i, top down) axes of an interval map of `size` layers."""
    axis = {"tickmode": "linear", "dtick": max(1, math.ceil(size / 12)), "showgrid": False, "zeroline": False}
    return {
        "xaxis": {
            **axis,
            "title": {"text": "end layer j"},
            "range": [-0.5, size - 0.5],
            "constrain": "domain",
        },
        "yaxis": {
            **axis,
            "title": {"text": "start layer i"},
            "range": [size - 0.5, -0.5],
            "scaleanchor": "x",
            "constrain": "domain",
        },
    }
