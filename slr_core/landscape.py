"""The CRC landscape of a pair: reference points, every interval, the soup curve, and selection."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CSV_COLUMNS = ("kind", "start", "end", "alpha", "quality", "diversity")


@dataclass(frozen=True)
class Point:
    """Q_CRC and D_CRC of one model."""

    quality: float
    diversity: float


@dataclass
class Landscape:
    """All CRC results of one pair and prompt set; filled in as a sweep runs."""

    num_layers: int
    post: Point | None = None
    pre: Point | None = None
    intervals: dict[tuple[int, int], Point] = field(default_factory=dict)
    soup: dict[float, Point] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def matrix(self, metric: str) -> np.ndarray:
        """[N, N] array of 'quality' or 'diversity', row = start i, column = end j; NaN elsewhere."""
        grid = np.full((self.num_layers, self.num_layers), np.nan)
        for (start, end), point in self.intervals.items():
            grid[start, end] = getattr(point, metric)
        return grid

    def q_min(self, fraction: float = 0.9) -> float:
        """The paper's threshold: fraction * Q_CRC(post)."""
        if self.post is None:
            raise ValueError("The post-trained reference has not been computed yet.")
        return fraction * self.post.quality

    def best_interval(self, q_min: float) -> tuple[int, int] | None:
        """argmax D over intervals with Q >= q_min (ties: higher Q, then shorter, then earlier)."""
        feasible = [(k, p) for k, p in self.intervals.items() if p.quality >= q_min]
        if not feasible:
            return None
        ranked = max(
            feasible, key=lambda kp: (kp[1].diversity, kp[1].quality, -(kp[0][1] - kp[0][0]), -kp[0][0])
        )
        return ranked[0]

    def best_alpha(self, q_min: float) -> float | None:
        """The Proxy-Soup alpha chosen by the same rule as the interval."""
        feasible = [(a, p) for a, p in self.soup.items() if p.quality >= q_min]
        return max(feasible, key=lambda ap: (ap[1].diversity, ap[1].quality))[0] if feasible else None

    def pareto_front(self) -> list[tuple[int, int]]:
        """Intervals no other interval beats on both Q and D, ordered by quality."""
        items = sorted(self.intervals.items(), key=lambda kp: (-kp[1].quality, -kp[1].diversity))
        front, best_diversity = [], -np.inf
        for key, point in items:
            if point.diversity > best_diversity:
                front.append(key)
                best_diversity = point.diversity
        return front

    def controls(self, interval: tuple[int, int]) -> dict[str, tuple[int, int]]:
        """SLR-Early [0, l-1] and SLR-Late [N-l, N-1] with the same length l as `interval`."""
        length = interval[1] - interval[0] + 1
        return {"early": (0, length - 1), "late": (self.num_layers - length, self.num_layers - 1)}

    def rows(self) -> list[dict]:
        """CSV rows: post, pre, one per interval, one per soup alpha; empty where n/a."""
        out = []
        if self.post:
            out.append(_row("post", point=self.post))
        if self.pre:
            out.append(_row("pre", point=self.pre))
        for (start, end), point in sorted(self.intervals.items()):
            out.append(_row("interval", start, end, point=point))
        for alpha, point in sorted(self.soup.items()):
            out.append(_row("soup", alpha=alpha, point=point))
        return out

    def summary(self, fraction: float = 0.9) -> dict:
        """The selected interval, its controls and references, as plain numbers."""
        q_min = self.q_min(fraction)
        best = self.best_interval(q_min)
        summary = {"q_min": q_min, "post": _plain(self.post), "pre": _plain(self.pre), "best": None}
        if best is not None:
            summary["best"] = {"interval": list(best), **_plain(self.intervals[best])}
            summary["controls"] = {
                name: {"interval": list(k), **_plain(self.intervals.get(k))}
                for name, k in self.controls(best).items()
            }
        alpha = self.best_alpha(q_min)
        if alpha is not None:
            summary["soup"] = {"alpha": alpha, **_plain(self.soup[alpha])}
        return summary


def _row(kind, start="", end="", alpha="", point: Point | None = None) -> dict:
    return {
        "kind": kind,
        "start": start,
        "end": end,
        "alpha": alpha,
        "quality": f"{point.quality:.6f}",
        "diversity": f"{point.diversity:.6f}",
    }


def _plain(point: Point | None) -> dict:
    return {"quality": point.quality, "diversity": point.diversity} if point else {}


def parse_intervals(text: str, num_layers: int) -> set[tuple[int, int]]:
    """'0-3,5-9,7' -> {(0, 3), (5, 9), (7, 7)}, validated against the depth."""
    from .errors import IntervalError
    from .hybrid import check_interval

    wanted = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        bounds = part.split("-")
        if len(bounds) > 2 or not all(b.strip().isdigit() for b in bounds):
            raise IntervalError(f"Cannot read interval '{part}': write 'i-j' (e.g. 0-3) or 'i'.")
        start, end = int(bounds[0]), int(bounds[-1])
        check_interval(start, end, num_layers)
        wanted.add((start, end))
    if not wanted:
        raise IntervalError(f"No interval given in '{text}'.")
    return wanted
