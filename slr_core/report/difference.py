"""Two pairs' landscapes on one interval grid: per-interval differences, and each pair's picks.

The difference is always second minus first (B - A), interval by interval. Two landscapes are
comparable only when they were measured the same way: the same prompt set, the same restore mode and
the same depth; anything else is refused with what differs.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slr_core.errors import InputError
from slr_core.slr.landscape import METRICS, RULE_DIVERSITY, RULES, Landscape, Point

# The columns of `diff --out`: where, then per metric A, B and B - A.
DIFF_COLUMNS = ("start", "end") + tuple(
    f"{metric}_{side}" for metric in METRICS for side in ("a", "b", "delta")
)
DIFF_METRICS = ("diversity", "strict_quality", "stop")  # the maps the page draws


def read_landscape(path: str | Path) -> Landscape:
    """A landscape CSV written by `sweep` and its .meta.json, read back (InputError if either is bad)."""
    path = Path(path)
    meta_path = path.with_suffix(".meta.json")
    if not path.is_file():
        raise InputError(f"{path}: no such landscape CSV; give a file that `sweep --out` wrote.")
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        points = [(row, _point(row)) for row in rows]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path} cannot be read as a landscape ({error}): sweep it again.") from error
    intervals = {(int(r["start"]), int(r["end"])): p for r, p in points if r["kind"] == "interval"}
    if not intervals:
        raise InputError(f"{path} holds no interval rows: give a landscape CSV that `sweep` wrote.")
    # The sweep's meta does not carry the depth; every full sweep covers layer N-1 as an end.
    depth = int(meta.get("num_layers") or max(end for _, end in intervals) + 1)
    landscape = Landscape(depth, intervals=intervals, meta=meta)
    for row, point in points:
        if row["kind"] in ("post", "pre"):
            setattr(landscape, row["kind"], point)
        elif row["kind"] == "soup":
            landscape.soup[float(row["alpha"])] = point
    return landscape


def _point(row: dict) -> Point:
    return Point(*(float(row[metric]) if row.get(metric, "") != "" else None for metric in METRICS))


def check_comparable(first: Landscape, second: Landscape, names: tuple[str, str] = ("A", "B")) -> None:
    """Refuse (InputError) two landscapes of different depth, prompt set or restore mode."""
    if first.num_layers != second.num_layers:
        raise InputError(
            f"{names[0]} has {first.num_layers} layers and {names[1]} has {second.num_layers}: "
            "landscapes can be compared only on the same interval grid; choose pairs of the same depth."
        )
    for key, what in (("prompt_set", "prompt sets"), ("restore", "restore modes")):
        left, right = first.meta.get(key), second.meta.get(key)
        if left is None or right is None:
            raise InputError(
                f"{names[0] if left is None else names[1]} does not record its {key}: compare landscapes "
                "whose .meta.json `sweep` wrote beside them."
            )
        if left != right:
            raise InputError(
                f"{names[0]} and {names[1]} come from different {what} ({left} vs {right}): "
                f"sweep both with the same {key.replace('_', ' ')} to compare them."
            )


@dataclass
class Difference:
    """Two comparable landscapes; every delta is second minus first."""

    first: Landscape
    second: Landscape
    names: tuple[str, str] = ("A", "B")  # how messages and figures call the two

    def __post_init__(self) -> None:
        check_comparable(self.first, self.second, self.names)

    def matrix(self, metric: str) -> np.ndarray:
        """[N, N] of second - first for one of METRICS (NaN where either is missing)."""
        return self.second.matrix(metric) - self.first.matrix(metric)

    def rows(self) -> list[dict]:
        """One row per interval both hold: start, end, and per metric A, B and B - A."""
        out = []
        for key in sorted(set(self.first.intervals) & set(self.second.intervals)):
            row = {"start": key[0], "end": key[1]}
            for metric in METRICS:
                a = getattr(self.first.intervals[key], metric)
                b = getattr(self.second.intervals[key], metric)
                delta = None if a is None or b is None else b - a
                row |= {f"{metric}_a": _text(a), f"{metric}_b": _text(b), f"{metric}_delta": _text(delta)}
            out.append(row)
        return out

    def largest(
        self, metric: str, count: int = 5, lowest: bool = True
    ) -> list[tuple[tuple[int, int], float]]:
        """The `count` intervals where second - first is lowest (or highest), with that delta."""
        grid = self.matrix(metric)
        cells = [((i, j), float(grid[i, j])) for i, j in zip(*np.where(~np.isnan(grid)), strict=True)]
        cells.sort(key=lambda cell: (cell[1] if lowest else -cell[1], cell[0]))
        return cells[:count]


def picks(landscape: Landscape, fraction: float) -> dict[str, tuple[int, int] | None]:
    """Each rule's selected interval at q_min = fraction x the pair's own post-trained quality."""
    rules = landscape.usable_rules()
    return {rule: landscape.best_interval(landscape.q_min(fraction, rule), rule) for rule in rules}


def unavailable(landscape: Landscape) -> list[str]:
    """The rules this landscape lacks the numbers for (RULES order)."""
    return [rule for rule in RULES if rule not in landscape.usable_rules()]


def _text(value: float | None) -> str:
    return "" if value is None else f"{value:.8g}"


def picks_text(difference: Difference, fraction: float) -> str:
    """Plain lines: each pair's pick under each rule, then where D drops most from A to B."""
    lines, names = [], difference.names
    for name, landscape in zip(names, (difference.first, difference.second), strict=True):
        label = landscape.meta.get("pair", "")
        lines.append(f"{name}: {label}".rstrip(": "))
        for rule, best in picks(landscape, fraction).items():
            if best is None:
                lines.append(f"  {rule} rule: no interval reaches q_min")
                continue
            point = landscape.intervals[best]
            lines.append(
                f"  {rule} rule: [{best[0]}, {best[1]}]  D {point.diversity:.4f}  Q {point.quality:.4f}"
                + ("" if point.strict_quality is None else f"  strict Q {point.strict_quality:.4f}")
                + ("" if point.stop is None else f"  stop {point.stop:.4f}")
                + ("" if point.answer_diversity is None else f"  answer D {point.answer_diversity:.4f}")
            )
        for rule in unavailable(landscape):
            lines.append(f"  {rule} rule: not available ({RULE_DIVERSITY[rule]} or strict CRC not computed)")
    drops = ", ".join(f"[{i}, {j}] {delta:+.4f}" for (i, j), delta in difference.largest("diversity"))
    lines.append(f"largest drops of D ({names[1]} - {names[0]}): {drops}")
    return "\n".join(lines)
