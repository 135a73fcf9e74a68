"""The CRC landscape of a pair: reference points, every interval, the soup curve, and selection.

Three selection rules. `strict` (the default): max D subject to strict_quality >= q_fraction x
strict_quality(post), where strict quality counts a valid answer only if the reply then ends.
`paper`: the paper's first-token rule, max D subject to Q >= q_fraction x Q(post).
`answer`: max answer_diversity (the entropy over whole answers that end the reply) subject to the
strict rule's threshold; it needs landscapes swept with answer_diversity (multi-token scoring).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slr_core.errors import SLRError

CSV_COLUMNS = (
    "kind", "start", "end", "alpha", "quality", "diversity", "stop", "strict_quality", "answer_diversity"
)  # fmt: skip
METRICS = ("quality", "diversity", "stop", "strict_quality", "answer_diversity")
RULES = ("strict", "paper", "answer")
# What a restoration brings back in each chosen layer: all of it, its attention, or its MLP/MoE block.
DEFAULT_RULE = "strict"
# The quality each rule thresholds and ranks by.
RULE_QUALITY = {"strict": "strict_quality", "paper": "quality", "answer": "strict_quality"}
# The diversity each rule maximises.
RULE_DIVERSITY = {"strict": "diversity", "paper": "diversity", "answer": "answer_diversity"}
LOW_STOP = 0.5  # a stop rate below this: most valid answers run on instead of ending the reply


@dataclass(frozen=True)
class Point:
    """CRC means of one model: Q, D, the stop rate after a valid answer, and strict quality."""

    quality: float
    diversity: float
    stop: float | None = None
    strict_quality: float | None = None
    # Entropy over answers of the mass that says an answer and then ends, / strict quality (README,
    # "Answers of several tokens"); None in landscapes written before it existed.
    answer_diversity: float | None = None

    def rule_quality(self, rule: str) -> float:
        """The quality `rule` thresholds on (NaN when strict numbers are missing)."""
        value = getattr(self, RULE_QUALITY[check_rule(rule)])
        return float("nan") if value is None else value

    def rule_diversity(self, rule: str) -> float:
        """The diversity `rule` maximises (NaN when it is not computed)."""
        value = getattr(self, RULE_DIVERSITY[check_rule(rule)])
        return float("nan") if value is None else value


def low_stop(point: Point | None) -> bool:
    """Whether a point's replies mostly run on after a valid answer (stop rate known and below LOW_STOP)."""
    return point is not None and point.stop is not None and point.stop < LOW_STOP


def check_rule(rule: str) -> str:
    """Return `rule` if it is a known selection rule, else raise ValueError naming the choices."""
    if rule not in RULES:
        raise ValueError(f"Unknown selection rule '{rule}': use one of {', '.join(RULES)}.")
    return rule


class RuleUnavailable(SLRError):
    """A rule the landscape lacks the numbers for (the answer rule on a landscape swept before
    answer_diversity existed; the strict rules on one without strict CRC)."""


@dataclass
class Landscape:
    """All CRC results of one pair and prompt set; filled in as a sweep runs."""

    num_layers: int
    post: Point | None = None
    pre: Point | None = None
    intervals: dict[tuple[int, int], Point] = field(default_factory=dict)
    soup: dict[float, Point] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    # Results measured on a small prompt subset only (cached_sweep.first_look), to be replaced by full
    # ones: interval keys (i, j) and the reference names "post" and "pre".
    coarse: set[tuple[int, int] | str] = field(default_factory=set)

    def matrix(self, metric: str) -> np.ndarray:
        """[N, N] array of one of METRICS, row = start i, column = end j; NaN elsewhere."""
        grid = np.full((self.num_layers, self.num_layers), np.nan)
        for (start, end), point in self.intervals.items():
            value = getattr(point, metric)
            grid[start, end] = np.nan if value is None else value
        return grid

    def coarse_matrix(self) -> np.ndarray:
        """[N, N] booleans, True where the shown interval is a coarse (prompt-subset) result."""
        grid = np.zeros((self.num_layers, self.num_layers), dtype=bool)
        for key in self.coarse:
            if isinstance(key, tuple):
                grid[key] = True
        return grid

    @property
    def is_coarse(self) -> bool:
        """Whether any shown result is still a coarse one."""
        return bool(self.coarse)

    @property
    def has_strict(self) -> bool:
        """Whether every result computed so far carries the strict-CRC numbers."""
        points = [self.post, self.pre, *self.intervals.values(), *self.soup.values()]
        return all(p.strict_quality is not None for p in points if p is not None)

    @property
    def has_answer(self) -> bool:
        """Whether every result computed so far carries answer_diversity (and there is one)."""
        points = [p for p in (self.post, self.pre, *self.intervals.values(), *self.soup.values()) if p]
        return bool(points) and self.has_strict and all(p.answer_diversity is not None for p in points)

    def usable_rules(self) -> list[str]:
        """The rules this landscape's numbers support, in RULES order (paper always)."""
        usable = {"strict": self.has_strict, "paper": True, "answer": self.has_answer}
        return [rule for rule in RULES if usable[rule]]

    def check_usable(self, rule: str) -> str:
        """`rule` if this landscape supports it, else RuleUnavailable saying why and what to do."""
        if check_rule(rule) in self.usable_rules():
            return rule
        if rule == "answer":
            raise RuleUnavailable(
                "The answer rule needs answer_diversity (the entropy over whole answers), which this "
                "landscape lacks: it was swept before that column existed. Sweep it again (the cache "
                "keys results by code version), or use the strict or paper rule."
            )
        raise RuleUnavailable(
            f"The {rule} rule needs the strict CRC numbers, which this landscape lacks: use the paper rule."
        )

    def q_min(self, fraction: float, rule: str = DEFAULT_RULE) -> float:
        """The rule's threshold: fraction x the post-trained model's quality under `rule`."""
        if self.post is None:
            raise ValueError("The post-trained reference has not been computed yet.")
        return fraction * self.post.rule_quality(rule)

    def best_interval(self, q_min: float, rule: str = DEFAULT_RULE) -> tuple[int, int] | None:
        """argmax of the rule's D over intervals whose rule quality >= q_min (ties: higher quality,
        shorter, earlier); intervals without the rule's D are not candidates."""
        feasible = [
            (k, p)
            for k, p in self.intervals.items()
            if p.rule_quality(rule) >= q_min and not np.isnan(p.rule_diversity(rule))
        ]
        if not feasible:
            return None
        ranked = max(
            feasible,
            key=lambda kp: (
                kp[1].rule_diversity(rule),
                kp[1].rule_quality(rule),
                -(kp[0][1] - kp[0][0]),
                -kp[0][0],
            ),
        )
        return ranked[0]

    def best_alpha(self, q_min: float, rule: str = DEFAULT_RULE) -> float | None:
        """The Proxy-Soup alpha chosen by the same rule as the interval."""
        feasible = [
            (a, p)
            for a, p in self.soup.items()
            if p.rule_quality(rule) >= q_min and not np.isnan(p.rule_diversity(rule))
        ]
        key = lambda ap: (ap[1].rule_diversity(rule), ap[1].rule_quality(rule))  # noqa: E731
        return max(feasible, key=key)[0] if feasible else None

    def pareto_front(self, rule: str = DEFAULT_RULE) -> list[tuple[int, int]]:
        """Intervals no other interval beats on both the rule's quality and D, ordered by quality."""
        quality = lambda kp: kp[1].rule_quality(rule)  # noqa: E731
        diversity = lambda kp: kp[1].rule_diversity(rule)  # noqa: E731
        items = sorted(
            (
                kp
                for kp in self.intervals.items()
                if not np.isnan(quality(kp)) and not np.isnan(diversity(kp))
            ),
            key=lambda kp: (-quality(kp), -diversity(kp)),
        )
        front, best_diversity = [], -np.inf
        for key, point in items:
            if point.rule_diversity(rule) > best_diversity:
                front.append(key)
                best_diversity = point.rule_diversity(rule)
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

    def summary(self, fraction: float) -> dict:
        """References, and per rule its threshold, pick, controls and soup alpha, as plain numbers."""
        rules = self.usable_rules()
        summary = {"fraction": fraction, "post": _plain(self.post), "pre": _plain(self.pre), "rules": {}}
        for rule in rules:
            summary["rules"][rule] = self.rule_summary(fraction, rule)
        return summary

    def rule_summary(self, fraction: float, rule: str) -> dict:
        """One rule's threshold, selected interval (None if nothing is feasible), controls and soup."""
        q_min = self.q_min(fraction, rule)
        best = self.best_interval(q_min, rule)
        found = {"rule": rule, "quality_metric": RULE_QUALITY[rule], "q_min": q_min, "best": None}
        if rule != "strict" and rule != "paper":  # keys the older rules' consumers compare exactly
            found["diversity_metric"] = RULE_DIVERSITY[rule]
        if best is not None:
            found["best"] = {"interval": list(best), **_plain(self.intervals[best])}
            found["controls"] = {
                name: {"interval": list(k), **_plain(self.intervals.get(k))}
                for name, k in self.controls(best).items()
            }
        alpha = self.best_alpha(q_min, rule)
        if alpha is not None:
            found["soup"] = {"alpha": alpha, **_plain(self.soup[alpha])}
        return found


def _number(value: float | None) -> str:
    # Significant digits, not decimals: strict quality can be 1e-4 or smaller.
    return "" if value is None else f"{value:.8g}"


def _row(kind, start="", end="", alpha="", point: Point | None = None) -> dict:
    row = {"kind": kind, "start": start, "end": end, "alpha": alpha}
    return row | {metric: _number(getattr(point, metric)) for metric in METRICS}


def _plain(point: Point | None) -> dict:
    return {metric: getattr(point, metric) for metric in METRICS} if point else {}
