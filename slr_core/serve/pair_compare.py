"""Compare with another pair: the shown landscape beside a shipped one, on the same interval grid.

The second pair's landscape is read from a CSV the repo ships (assets/landscapes), so it opens at
once and a visitor never names a file on the server.
"""

from __future__ import annotations

import json
from pathlib import Path

from slr_core.engine.cached_sweep import SHIPPED_DIR
from slr_core.errors import InputError
from slr_core.report.difference import DIFF_METRICS, Difference, read_landscape
from slr_core.report.figures import heatmap_figure
from slr_core.report.modes import MODE_NAMES
from slr_core.report.pair_figures import difference_heatmap, fronts_figure, picks_markdown
from slr_core.slr.landscape import Landscape

NAMES = ("shown pair", "second pair")
PLOTS_PER_METRIC = 3  # shown pair, second pair, second - shown


def second_pair_choices(folder: Path | None = None) -> list[tuple[str, str]]:
    """(label, CSV path) of every shipped landscape, labelled by its pair and restore mode."""
    choices = []
    for meta_path in sorted((folder or SHIPPED_DIR).glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        csv_path = meta_path.with_name(meta_path.name.replace(".meta.json", ".csv"))
        mode = MODE_NAMES.get(meta.get("restore", ""), meta.get("restore", "?"))
        prompts = meta.get("prompts", "paper")  # landscapes written before it was recorded: the paper set
        mode += "" if prompts == "paper" else f", {Path(prompts).name} prompts"
        choices.append((f"{meta.get('pair', csv_path.stem)} ({mode})", str(csv_path)))
    return choices


def second_landscape(choice: str | None, folder: Path | None = None) -> tuple[str, Landscape]:
    """The label and landscape of a shipped choice; only listed files are ever read."""
    known = {path: label for label, path in second_pair_choices(folder)}
    if not choice or choice not in known:
        raise InputError("Pick a second pair from the list of shipped landscapes first.")
    return known[choice], read_landscape(choice)


def compare_with(
    first: Landscape | None,
    first_label: str,
    second: Landscape,
    second_label: str,
    fraction: float,
    rule: str,
) -> dict:
    """What the section draws: a note, the 3 x 3 maps (per metric: shown, second, Δ), fronts and picks."""
    if first is None or not first.intervals:
        raise InputError("No landscape is shown yet: load a pair and wait for its first results.")
    difference = Difference(first, second, NAMES)  # refuses another depth, prompt set or restore mode
    maps = []
    for metric in DIFF_METRICS:
        maps += [heatmap_figure(first, metric, height=360), heatmap_figure(second, metric, height=360)]
        maps.append(difference_heatmap(difference, metric, NAMES, height=360))
    note = (
        f"**Shown pair:** {first_label}  \n**Second pair:** {second_label}  \n"
        f"Every Δ is second pair − shown pair, interval by interval."
    )
    return {
        "note": note,
        "maps": maps,
        "fronts": fronts_figure((first, second), NAMES, rule, fraction),
        "picks": picks_markdown(difference, NAMES, fraction),
    }
