"""Two prompt sets' landscapes of one pair, side by side: each rule's pick, and how the maps rank alike.

Usage: python benchmarks/open_vs_paper.py OPEN.csv [PAPER.csv] [--q-fraction 0.9]
PAPER.csv defaults to the shipped demo landscape (assets/landscapes/demo.csv). Prints a markdown table
of each rule's q_min and pick with its numbers in both landscapes, then the Spearman correlation over
the intervals both hold, metric by metric (`diff` refuses landscapes of different prompt sets, since
their numbers are not the same quantity; their rankings still compare).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy.stats import spearmanr  # noqa: E402

from slr_core.models.settings import DEFAULT_Q_FRACTION  # noqa: E402
from slr_core.report.difference import read_landscape  # noqa: E402
from slr_core.slr.landscape import METRICS, Landscape  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "landscapes" / "demo.csv"


def picks(landscape: Landscape, fraction: float) -> dict[str, tuple[float, tuple[int, int] | None]]:
    """Each usable rule's (q_min, pick)."""
    out = {}
    for rule in landscape.usable_rules():
        summary = landscape.rule_summary(fraction, rule)
        best = summary["best"]
        out[rule] = (summary["q_min"], tuple(best["interval"]) if best else None)
    return out


def rank_agreement(first: Landscape, second: Landscape) -> dict[str, tuple[float, int]]:
    """Spearman rho and the number of intervals, per metric both landscapes hold."""
    shared = sorted(first.intervals.keys() & second.intervals.keys())
    out = {}
    for metric in METRICS:
        pairs = [(getattr(first.intervals[k], metric), getattr(second.intervals[k], metric)) for k in shared]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if len(pairs) > 2:
            out[metric] = (float(spearmanr(*zip(*pairs)).statistic), len(pairs))
    return out


def _cell(landscape: Landscape, interval: tuple[int, int] | None) -> str:
    point = landscape.intervals.get(interval) if interval else None
    if point is None:
        return "-"
    values = [point.quality, point.diversity, point.strict_quality, point.answer_diversity]
    return " / ".join("-" if v is None else f"{v:.4f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("open_csv")
    parser.add_argument("paper_csv", nargs="?", default=str(SHIPPED))
    parser.add_argument("--q-fraction", type=float, default=DEFAULT_Q_FRACTION)
    args = parser.parse_args()
    sets = {"open": read_landscape(args.open_csv), "paper": read_landscape(args.paper_csv)}
    print("Picks (numbers: Q / D / strict Q / answer D of that interval on each prompt set)\n")
    print("| prompt set | rule | q_min | pick | on open answers | on paper digits/letters |")
    print("|---|---|---|---|---|---|")
    for name, landscape in sets.items():
        for rule, (q_min, pick) in picks(landscape, args.q_fraction).items():
            where = f"[{pick[0]}, {pick[1]}]" if pick else "none"
            row = [name, rule, f"{q_min:.4f}", where, _cell(sets["open"], pick), _cell(sets["paper"], pick)]
            print("| " + " | ".join(row) + " |")
    print("\nSpearman correlation over intervals, open vs paper\n")
    print("| metric | rho | intervals |")
    print("|---|---|---|")
    for metric, (rho, count) in rank_agreement(sets["open"], sets["paper"]).items():
        print(f"| {metric} | {rho:.4f} | {count} |")


if __name__ == "__main__":
    main()
