"""Compare two landscape CSVs (e.g. a bfloat16 sweep against a float32 one) and print Markdown.

Both CSVs come from `python -m slr_core sweep [--soup]` (with their .meta.json beside them). Usage:
    python benchmarks/bf16_vs_fp32.py FLOAT32.csv BFLOAT16.csv [--seconds 829 2545] [--q-fraction 0.9]
Prints, over every interval and soup point both hold: max and mean |d| of Q, D, stop and strict Q;
the Spearman rank correlation of D and of strict Q over the intervals; each rule's pick in both and
whether it is the same interval; the two sweep times when given; the CPU flags that matter for bf16.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slr_core.models.settings import DEFAULT_Q_FRACTION  # noqa: E402
from slr_core.slr.landscape import METRICS, RULES, Landscape, Point  # noqa: E402

NAMES = {"quality": "Q", "diversity": "D", "stop": "stop", "strict_quality": "strict Q"}


def cpu_flags() -> list[str]:
    """The bf16-relevant CPU flags this machine reports."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(info.split())
    return sorted(flag for flag in ("avx512_bf16", "amx_bf16", "amx_tile") if flag in flags)


def read_landscape(path: str | Path) -> Landscape:
    """A landscape CSV and its meta, as the sweep wrote them."""
    path = Path(path)
    meta_path = path.with_suffix(".meta.json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    rows = list(csv.DictReader(path.open(newline="")))
    ends = [int(row["end"]) for row in rows if row["kind"] == "interval"]
    landscape = Landscape(max(ends) + 1 if ends else 0, meta=meta)
    for row in rows:
        point = Point(*(float(row[m]) if row[m] not in ("", None) else None for m in METRICS))
        if row["kind"] in ("post", "pre"):
            setattr(landscape, row["kind"], point)
        elif row["kind"] == "interval":
            landscape.intervals[(int(row["start"]), int(row["end"]))] = point
        elif row["kind"] == "soup":
            landscape.soup[float(row["alpha"])] = point
    return landscape


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def compare(reference: Landscape, other: Landscape, fraction: float = DEFAULT_Q_FRACTION) -> dict:
    """Deviations, rank correlations and picks of `other` against `reference`."""
    keys = sorted(reference.intervals.keys() & other.intervals.keys())
    alphas = sorted(reference.soup.keys() & other.soup.keys())
    pairs = [(reference.intervals[k], other.intervals[k]) for k in keys]
    pairs += [(reference.soup[a], other.soup[a]) for a in alphas]
    pairs += [(getattr(reference, n), getattr(other, n)) for n in ("post", "pre") if getattr(reference, n)]
    deviations = {}
    for metric in METRICS:
        gaps = [
            abs(getattr(a, metric) - getattr(b, metric))
            for a, b in pairs
            if getattr(a, metric) is not None and getattr(b, metric) is not None
        ]
        deviations[metric] = (max(gaps), sum(gaps) / len(gaps)) if gaps else (float("nan"), float("nan"))
    ranks = {
        metric: spearman(
            [getattr(reference.intervals[k], metric) for k in keys],
            [getattr(other.intervals[k], metric) for k in keys],
        )
        for metric in ("diversity", "strict_quality", "quality")
        if len(keys) >= 10 and all(getattr(reference.intervals[k], metric) is not None for k in keys)
    }
    picks = {}
    for rule in RULES if reference.intervals.keys() == other.intervals.keys() else ():  # else not comparable
        if rule == "strict" and not (reference.has_strict and other.has_strict):
            continue
        chosen = [x.best_interval(x.q_min(fraction, rule), rule) for x in (reference, other)]
        picks[rule] = chosen
    return {
        "intervals": len(keys),
        "soup": len(alphas),
        "deviations": deviations,
        "ranks": ranks,
        "picks": picks,
    }


def markdown(result: dict, names: tuple[str, str], seconds: list[float] | None) -> str:
    """The comparison as Markdown tables."""
    first, second = names
    lines = [
        f"{result['intervals']} intervals, {result['soup']} soup points and the two references; "
        f"{second} against {first}.",
        "",
        "| column | max abs difference | mean abs difference |",
        "|---|---|---|",
    ]
    for metric, (worst, mean) in result["deviations"].items():
        lines.append(f"| {NAMES[metric]} | {worst:.4f} | {mean:.4f} |")
    if result["ranks"]:  # only over 10 or more intervals
        lines += ["", "| Spearman over intervals | " + " | ".join(NAMES[m] for m in result["ranks"]) + " |"]
        lines += ["|---|" + "---|" * len(result["ranks"])]
        lines += ["| rank correlation | " + " | ".join(f"{v:.4f}" for v in result["ranks"].values()) + " |"]
    lines += [""]
    lines += (
        [f"| rule | {first} pick | {second} pick | same |", "|---|---|---|---|"]
        if result["picks"]
        else ["(picks not compared: the two landscapes hold different intervals)"]
    )
    for rule, (a, b) in result["picks"].items():
        lines.append(
            f"| {rule} | {list(a) if a else None} | {list(b) if b else None} | {'yes' if a == b else 'no'} |"
        )
    if seconds:
        lines += [
            "",
            f"Sweep time: {first} {seconds[0]:.1f} s, {second} {seconds[1]:.1f} s "
            f"({seconds[0] / seconds[1]:.2f}x).",
        ]
    lines += ["", f"CPU flags: {', '.join(cpu_flags()) or 'none of avx512_bf16/amx'}."]
    return "\n".join(lines)


def _precision(meta: dict, path: str) -> str:
    # 'float32', or 'float32 on bfloat16 weights' where the weights were kept narrower.
    dtype, weights = meta.get("dtype", path), meta.get("weights_dtype")
    return dtype if weights in (None, dtype) else f"{dtype} on {weights} weights"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("reference", help="the float32 landscape CSV")
    parser.add_argument("other", help="the half-precision landscape CSV")
    parser.add_argument("--seconds", type=float, nargs=2, metavar=("REFERENCE", "OTHER"), help="sweep times")
    parser.add_argument("--q-fraction", type=float, default=DEFAULT_Q_FRACTION)
    args = parser.parse_args(argv)
    reference, other = read_landscape(args.reference), read_landscape(args.other)
    names = tuple(_precision(x.meta, path) for x, path in ((reference, args.reference), (other, args.other)))
    print(markdown(compare(reference, other, args.q_fraction), names, args.seconds))


if __name__ == "__main__":
    main()
