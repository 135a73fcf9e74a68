"""One formatter over Landscape.summary(): the selection under each rule, for the page, the CLI and model cards.

`summary_rows` flattens the summary into rows (post, pre, then per rule its SLR pick, the SLR-Early and
-Late controls and the Proxy-Soup alpha); `summary_markdown` and `summary_text` render those rows.
"""

from __future__ import annotations

import math

from slr_core import cache
from slr_core.engine.cached_sweep import result_count, result_names
from slr_core.slr.landscape import Landscape, Point, check_rule, low_stop
from slr_core.slr.soup import ALPHAS

# Column -> Point field, in the order both formats show them.
NUMBERS = {
    "Q": "quality", "strict Q": "strict_quality", "stop": "stop", "D": "diversity", "answer D": "answer_diversity"
}  # fmt: skip
RULE_WORDS = {
    "strict": "max D s.t. strict Q >= {fraction:.2f} x strict Q(post) = {q_min}",
    "paper": "max D s.t. Q >= {fraction:.2f} x Q(post) = {q_min} (first-token rule)",
    "answer": "max answer D s.t. strict Q >= {fraction:.2f} x strict Q(post) = {q_min}",
}
NO_ANSWER = (
    "The answer rule needs answer D (entropy over whole answers that end the reply), which this "
    "landscape lacks (swept before it existed): sweep it again to use it; the strict rule is shown."
)
NOT_STRICT = (
    "Strict CRC numbers (strict Q, stop rate) are not computed for this landscape: "
    "only the paper's first-token rule is shown."
)


def summary_rows(landscape: Landscape, fraction: float) -> list[dict]:
    """Rows {label, kind, rule, q_min, interval, alpha, quality, strict_quality, stop, diversity}.

    kind is one of post, pre, slr, control, soup, none (a rule that selects nothing). Empty when the
    post-trained reference is not computed yet.
    """
    if landscape.post is None:
        return []
    summary = landscape.summary(fraction)
    rows = [
        _row("post-trained", "post", summary["post"]),
        *([_row("pre-trained", "pre", summary["pre"])] if summary["pre"] else []),
    ]
    for rule, found in summary["rules"].items():
        base = {"rule": rule, "q_min": found["q_min"]}
        if found["best"] is None:
            rows.append({**_row("SLR: no interval reaches q_min", "none", {}), **base})
        else:
            rows.append({**_row("SLR", "slr", found["best"]), **base})
        for name, control in found.get("controls", {}).items():
            rows.append({**_row(f"SLR-{name.title()}", "control", control), **base})
        if "soup" in found:
            rows.append({**_row("Proxy-Soup", "soup", found["soup"]), **base})
    return rows


def _row(label: str, kind: str, plain: dict) -> dict:
    interval = tuple(plain["interval"]) if plain.get("interval") else None
    numbers = {field: plain.get(field) for field in NUMBERS.values()}
    return {"label": label, "kind": kind, "rule": None, "q_min": None, "interval": interval,
            "alpha": plain.get("alpha"), **numbers}  # fmt: skip


def rule_lines(landscape: Landscape, fraction: float) -> list[str]:
    """One line per rule the landscape supports: what it maximises subject to which threshold."""
    if landscape.post is None:
        return []
    rules = landscape.summary(fraction)["rules"]
    return [
        f"{rule} rule: " + RULE_WORDS[rule].format(fraction=fraction, q_min=format_number(found["q_min"], 4))
        for rule, found in rules.items()
    ]


def format_number(value: float | None, digits: int) -> str:
    """`digits` decimals; significant digits instead for values too small to show that way."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if 0 < abs(value) < 10 ** (1 - digits):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def _where(row: dict) -> str:
    if row["interval"] is not None:
        return f"[{row['interval'][0]}, {row['interval'][1]}]"
    return f"α = {row['alpha']:.2f}" if row["alpha"] is not None else ""


def summary_markdown(landscape: Landscape, fraction: float, digits: int = 4, controls: bool = True) -> str:
    """A Markdown table: references, then each rule's pick (controls) and soup side by side; rule notes."""
    rows = [row for row in summary_rows(landscape, fraction) if controls or row["kind"] != "control"]
    if not rows:
        return "The post-trained reference is not computed yet: no selection to show."
    columns = _columns(landscape)
    lines = [
        "| model | rule | q_min | interval / α | " + " | ".join(columns) + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for row in rows:
        label = f"**{row['label']}**" if row["kind"] == "slr" else row["label"]
        q_min = "" if row["q_min"] is None else format_number(row["q_min"], digits)
        cells = [label, row["rule"] or "", q_min, _where(row)]
        if row["kind"] != "none":
            cells += [format_number(row[NUMBERS[column]], digits) for column in columns]
        else:
            cells += [""] * len(columns)
        lines.append("| " + " | ".join(cells) + " |")
    notes = rule_lines(landscape, fraction)
    if not landscape.has_strict:
        notes.append(NOT_STRICT)
    return "\n".join(lines) + "\n\n" + "  \n".join(notes)


def summary_text(landscape: Landscape, fraction: float, digits: int = 4) -> str:
    """Plain text for a terminal: references, then per rule its threshold, pick, controls and soup."""
    rows = summary_rows(landscape, fraction)
    if not rows:
        return "the post-trained reference is not computed yet: no selection to show"
    columns = _columns(landscape)

    def numbers(row: dict) -> str:
        return ", ".join(f"{_text_name(c)} = {format_number(row[NUMBERS[c]], digits)}" for c in columns)

    lines, rule_text = [], dict(zip(landscape.summary(fraction)["rules"], rule_lines(landscape, fraction)))
    for row in rows:
        if row["kind"] in ("post", "pre"):
            lines.append(f"{row['label'] + ':':<14}{numbers(row)}")
        elif row["kind"] == "none":
            lines += [
                rule_text[row["rule"]],
                f"  no interval reaches q_min = {format_number(row['q_min'], digits)}",
            ]
        elif row["kind"] == "slr":
            lines += [rule_text[row["rule"]], f"  best interval {_where(row)}: {numbers(row)}"]
        elif row["kind"] == "control":
            lines.append(f"  {row['label']} {_where(row)}: {numbers(row)}")
        else:
            lines.append(f"  Proxy-Soup best alpha = {row['alpha']:.2f}: {numbers(row)}")
    if not landscape.has_strict:
        lines.append(NOT_STRICT)
    return "\n".join(lines)


def _columns(landscape: Landscape) -> list[str]:
    if not landscape.has_strict:
        return ["Q", "D"]
    return list(NUMBERS) if landscape.has_answer else [c for c in NUMBERS if c != "answer D"]


def _text_name(column: str) -> str:
    return {"Q": "Q_CRC", "D": "D_CRC"}.get(column, column)


def best_text(landscape: Landscape, rule: str, q_fraction: float, q_min: float | None = None) -> str:
    """`best`'s report: every rule's pick (summary_text), then the pick of `rule` at q_fraction (or q_min).

    The answer rule on a landscape without answer D is refused (RuleUnavailable: the CLI exits 2); the
    strict rule on one without strict numbers falls back to the paper rule, as it always has."""
    if rule == "answer":
        landscape.check_usable("answer")
    rule = rule if rule in landscape.usable_rules() else "paper"
    fraction = q_fraction if q_min is None else q_min / landscape.post.rule_quality(rule)
    best = landscape.rule_summary(fraction, rule)["best"]
    picked = f"[{best['interval'][0]}, {best['interval'][1]}]" if best else "none (nothing reaches q_min)"
    return f"{summary_text(landscape, fraction)}\nselected ({rule} rule): {picked}"


# ---------------------------------------------------------------- the page's side panel


def usable_rule(landscape: Landscape | None, rule: str) -> str:
    """`rule` where the landscape has its numbers; else the strict rule (for the answer rule on a landscape
    without answer D), else the paper rule (without strict numbers)."""
    check_rule(rule)
    if landscape is None:
        return "paper"
    return next(r for r in (rule, "strict", "paper") if r in landscape.usable_rules())


def stop_warning(point: Point | None) -> str:
    """A warning that replies of this restoration rarely end (stop rate below LOW_STOP), else ""."""
    if not low_stop(point):
        return ""
    return (
        f"⚠ Low stop rate ({format_number(point.stop, 3)}): after a valid answer its replies end by "
        f"themselves only {format_number(point.stop * 100, 1)}% of the time, so most run on past the answer."
    )


def references_markdown(
    landscape: Landscape | None, fraction: float, rule: str, selected: tuple[int, int] | None = None
) -> str:
    """Post, pre, the rule's best interval ★ and soup α, the selection ▢; the rule's q_min; progress."""
    if landscape is None:
        return "No pair loaded yet."
    asked, rule = rule, usable_rule(landscape, rule)
    columns = _columns(landscape)
    rows = ["| CRC | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]

    def row(name: str, point: Point | None) -> None:
        if point is not None:
            cells = (format_number(getattr(point, NUMBERS[column]), 3) for column in columns)
            rows.append(f"| {name} | " + " | ".join(cells) + " |")

    row("**Post-trained**", landscape.post)
    row("**Pre-trained**", landscape.pre)
    best = q_min = None
    warning = ""
    if landscape.post is not None:
        q_min = landscape.q_min(fraction, rule)
        best = landscape.best_interval(q_min, rule)
        if best is not None:
            row(f"**Best SLR [{best[0]}, {best[1]}]** ★", landscape.intervals[best])
            warning = stop_warning(landscape.intervals[best])
        alpha = landscape.best_alpha(q_min, rule)
        if alpha is not None:
            row(f"Proxy-Soup α = {alpha:.2f}", landscape.soup[alpha])
    if selected is not None and selected in landscape.intervals:
        row(f"Selected [{selected[0]}, {selected[1]}] ▢", landscape.intervals[selected])
    lines = ["\n".join(rows)]
    if warning:
        lines.append(f"**★ [{best[0]}, {best[1]}]: {warning}**")
    if q_min is not None:
        quality = "Q" if rule == "paper" else "strict Q"
        lines.append(f"{rule} rule: q_min = {fraction:.2f} × {quality}_post = **{format_number(q_min, 3)}**")
        if best is None and landscape.intervals:
            lines.append("No swept interval reaches q_min yet.")
    if not landscape.has_strict:
        lines.append(NOT_STRICT)
    elif asked == "answer" and rule != "answer":
        lines.append(NO_ANSWER)
    total = landscape.num_layers * (landscape.num_layers + 1) // 2
    lines.append(
        f"{len(landscape.intervals)} / {total} intervals · {len(landscape.soup)} / {len(ALPHAS)} soup α"
    )
    return "\n\n".join(lines)


def sweep_status(landscape: Landscape, running: bool) -> str:
    """One line on a landscape's sweep (complete, running, or waiting), and a warning when the cache
    cannot keep results."""
    done, total = result_count(landscape), len(result_names(landscape.num_layers))
    keeping = cache.keeping()
    warning = "" if keeping.kept else f" ⚠ {keeping.note()}"
    if done == total:
        return f"CRC landscape complete: {total} results (from the cache when swept before).{warning}"
    state = "Sweeping" if running else "Waiting to sweep"
    if landscape.coarse:
        meta = landscape.meta
        state = (
            f"First look (Q and D of every interval on {meta.get('coarse_prompts')} of "
            f"{meta.get('num_prompts')} prompts) shown; {state.lower()} the full set"
        )
    return f"{state}: {done} / {total} results (post, pre, intervals, soup).{warning}"
