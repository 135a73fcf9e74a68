"""One visitor's view of a pair, in plain Python: the landscape shown, rule, selection, and what to draw.

The web app keeps a SessionView per visitor and a ComparePanel per comparison, and puts what they
return into its components; nothing here imports a web UI.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

from . import figures
from .cached_sweep import all_intervals, result_count, result_names
from .hybrid import Restoration, check_interval, check_mode, interval_restoration, parse_layers
from .landscape import DEFAULT_RULE, Landscape, Point
from .metrics import crc_answers
from .models import ModelPair
from .modes import modes_figure, modes_markdown
from .presets import PRESETS
from .registry import PairKey
from .sampling import SamplingSettings, sample_statistics
from .settings import DEFAULT_Q_FRACTION
from .summary import references_markdown, summary_markdown, usable_rule

QUALITY_MAPS = ("strict_quality", "quality")  # what the quality heatmap can show
MODEL_TITLES = {"post": "Post-trained", "hybrid": "SLR hybrid", "pre": "Pre-trained"}
CUSTOM = "custom (type sources below)"


def default_sources() -> tuple[str, str]:
    """The pair a new visitor sees: $SLR_PRE/$SLR_POST, a hub preset on a Space, else the demo pair."""
    if os.environ.get("SLR_PRE") and os.environ.get("SLR_POST"):
        return os.environ["SLR_PRE"], os.environ["SLR_POST"]
    if os.environ.get("SPACE_ID"):
        hub = next(preset for preset in PRESETS.values() if not preset.offline)
        return hub.pre, hub.post
    return "demo:pre", "demo:post"


def preset_choices() -> list[str]:
    """Preset names for a picker; hub pairs first on a Space, the offline demo first elsewhere; then custom."""
    on_space = bool(os.environ.get("SPACE_ID"))
    names = sorted(PRESETS, key=lambda name: PRESETS[name].offline) if on_space else list(PRESETS)
    return [*names, CUSTOM]


def preset_for(pre: str, post: str) -> str:
    """The preset name with these sources, or the custom entry."""
    return next((name for name, p in PRESETS.items() if (p.pre, p.post) == (pre, post)), CUSTOM)


def snapshot(landscape: Landscape) -> Landscape:
    """A copy whose dicts a running sweep no longer changes."""
    return replace(
        landscape, intervals=dict(landscape.intervals), soup=dict(landscape.soup), meta=dict(landscape.meta)
    )


def merge(base: Landscape, update: Landscape) -> Landscape:
    """`base` with every result of `update` added (update wins)."""
    merged = snapshot(base)
    merged.post, merged.pre = update.post or base.post, update.pre or base.pre
    merged.intervals.update(update.intervals)
    merged.soup.update(update.soup)
    merged.meta.update(update.meta)
    return merged


def in_turns(steps: Iterator[Landscape], turn: AbstractContextManager) -> Iterator[Landscape]:
    """Run a sweep one step at a time inside `turn` (e.g. a lock), yielding a snapshot after each step."""
    while True:
        with turn:
            landscape = next(steps, None)
        if landscape is None:
            return
        yield snapshot(landscape)


@dataclass
class SessionView:
    """One visitor's view; mutated in place, so a running sweep draws the latest selection."""

    key: PairKey | None = None
    landscape: Landscape | None = None
    q_fraction: float = DEFAULT_Q_FRACTION
    rule: str = DEFAULT_RULE  # the visitor's choice; `shown_rule` is what the landscape allows
    quality_map: str = "strict_quality"
    selected: tuple[int, int] | None = None
    generation: int = 0  # bumped when another pair or mode is shown, which stops a stale sweep
    mode: str = "layer"  # what restoring a layer brings back: hybrid.RESTORE_MODES
    landscapes: dict[str, Landscape] = field(default_factory=dict)  # every mode's, as last seen
    lambda_slice: tuple[str, dict[float, Point]] | None = None  # a restoration's CRC at lambda 0..1

    def show_mode(self, mode: str, landscape: Landscape) -> None:
        """Show restore mode `mode` with its landscape (from the cache); a running sweep of the last one stops."""
        if self.landscape is not None:
            self.landscapes[self.mode] = self.landscape
        self.mode, self.landscape, self.lambda_slice = check_mode(mode), landscape, None
        self.generation += 1

    def restoration(self, layers: str = "", fraction: float = 1.0) -> Restoration:
        """What compare and export use: typed layers (e.g. '3,5,9-11') or the selection, in the shown mode."""
        if layers and layers.strip():
            chosen = parse_layers(layers, self.landscape.num_layers)
            return Restoration(chosen, self.mode, float(fraction)).check(self.landscape.num_layers)
        if self.selected is None:
            raise ValueError("Click a heatmap cell (or type an interval or layers) to choose the hybrid.")
        restoration = interval_restoration(*self.selected, self.mode, float(fraction))
        return restoration.check(self.landscape.num_layers)

    def all_modes(self) -> dict[str, Landscape]:
        """Every mode's landscape seen so far, the shown one current."""
        return {**self.landscapes, self.mode: self.landscape} if self.landscape is not None else {}

    def modes_summary(self) -> str:
        """Per restore mode, its best interval at the view's q_min (Markdown)."""
        table = modes_markdown(self.all_modes(), self.q_fraction, self.shown_rule)
        return f"#### Best interval per restore mode\n\n{table}" if table else ""

    def modes_figure(self):
        """The three modes' Pareto fronts on one plot."""
        return modes_figure(self.all_modes(), self.shown_rule, self.q_min())

    @property
    def shown_rule(self) -> str:
        """The chosen rule, or the paper rule where the strict numbers are not computed."""
        return usable_rule(self.landscape, self.rule)

    @property
    def shown_quality_map(self) -> str:
        """The quality the first heatmap shows (first-token Q where strict Q is not computed)."""
        return self.quality_map if self.landscape is not None and self.landscape.has_strict else "quality"

    def q_min(self) -> float | None:
        """The shown rule's threshold (None before the post-trained reference exists)."""
        if self.landscape is None or self.landscape.post is None:
            return None
        return self.landscape.q_min(self.q_fraction, self.shown_rule)

    def best(self) -> tuple[int, int] | None:
        """The shown rule's selected interval at the view's q_min."""
        q_min = self.q_min()
        return None if q_min is None else self.landscape.best_interval(q_min, self.shown_rule)

    def suggested(self) -> tuple[int, int] | None:
        """The interval the page offers: the selection, else the best interval so far."""
        return self.selected or self.best()

    def interval(self, start, end) -> tuple[int, int]:
        """A clicked or typed interval, checked against the landscape's depth (SLRError/ValueError if bad)."""
        try:
            interval = (int(start), int(end))
        except (TypeError, ValueError) as error:
            raise ValueError(
                "Choose an interval: click a heatmap cell, or type start i and end j."
            ) from error
        check_interval(*interval, self.landscape.num_layers)
        return interval

    def missing(self) -> set[tuple[int, int]]:
        """The intervals the view's landscape still lacks."""
        return all_intervals(self.landscape.num_layers) - set(self.landscape.intervals)

    def progress(self) -> tuple[int, int]:
        """(results the landscape holds, results of a full landscape)."""
        return result_count(self.landscape), len(result_names(self.landscape.num_layers))

    def follow(self, steps: Iterator[Landscape], every: float) -> Iterator[bool]:
        """Merge a sweep's snapshots into the view; yields True (running) at most every `every` s, then False.

        Stops early, yielding nothing more, once another pair is shown (`generation` changed).
        """
        generation, base, last = self.generation, self.landscape, 0.0
        for update in steps:
            if self.generation != generation:
                return  # the visitor switched pairs; the cache keeps what was computed
            self.landscape = merge(base, update)
            if time.monotonic() - last >= every:
                last = time.monotonic()
                yield True
        if self.generation == generation:
            yield False

    def heatmaps(self) -> dict[str, str]:
        """Figure JSON of the quality (Q or strict Q), diversity and stop-rate maps, keyed by map."""
        best, metrics = (
            self.best(),
            {"quality": self.shown_quality_map, "diversity": "diversity", "stop": "stop"},
        )
        return {
            name: figures.heatmap_figure(self.landscape, metric, best, self.selected).to_json()
            for name, metric in metrics.items()
        }

    def tradeoff(self):
        """The shown rule's quality vs D scatter with q_min, best and selection."""
        return figures.tradeoff_figure(
            self.landscape,
            self.q_min(),
            self.best(),
            self.selected,
            rule=self.shown_rule,
            lambda_slice=self.lambda_slice,
        )

    def references(self) -> str:
        """Post, pre, best, soup and selection under the shown rule (Markdown)."""
        return references_markdown(self.landscape, self.q_fraction, self.shown_rule, self.selected)

    def summary(self) -> str:
        """Both rules' picks side by side (Markdown)."""
        if self.landscape is None:
            return ""
        return "#### Selection under each rule\n\n" + summary_markdown(
            self.landscape, self.q_fraction, digits=3, controls=False
        )


def pair_markdown(pair: ModelPair) -> str:
    """The loaded pair's label and its sources."""
    return (
        f"**{html.escape(pair.label)}**\n\n"
        f"{pair.num_layers} decoder layers · pre-trained `{pair.pre_source.spec}` · "
        f"post-trained `{pair.post_source.spec}` · {str(pair.dtype).replace('torch.', '')} on {pair.device.type}"
    )


def compare_header(
    pair: ModelPair,
    interval: tuple[int, int],
    settings: SamplingSettings,
    prompt: str,
    restoration: Restoration | None = None,
    new_bytes: int = 0,
) -> str:
    """Everything needed to reproduce the samples shown."""
    start, end = interval
    what = f"layers {start}–{end} restored from the pre-trained model"
    if restoration is not None and restoration != interval_restoration(start, end):
        part = {"layer": "layers", "attention": "attention of layers", "mlp": "MLP of layers"}
        what = f"{part[restoration.mode]} {restoration.span} from the pre-trained model"
        what += "" if restoration.fraction == 1 else f" at λ = {restoration.fraction:g}"
        what += "; every norm post-trained" if restoration.mode != "layer" else ""
        memory = f"{new_bytes / 2**20:.1f} MiB of blended weights" if new_bytes else "no new weights"
        return f"**Hybrid {html.escape(restoration.label)}** ({what}; {memory}) · " + _settings_text(
            pair, settings, prompt
        )
    return f"**Interval [{start}, {end}]** ({what}) · " + _settings_text(pair, settings, prompt)


def _settings_text(pair: ModelPair, settings: SamplingSettings, prompt: str) -> str:
    return (
        f"seed **{settings.seed}** · {settings.num_samples} samples per model · min-p {settings.min_p} · "
        f"temperature {settings.temperature} · max {settings.max_new_tokens} new tokens\n\n"
        f"Pair: {html.escape(pair.label)} · prompt: “{html.escape(prompt)}”"
    )


def samples_html(which: str, title: str, texts: list[str] | None, badge: str) -> str:
    """One model's samples as a numbered list under its title and a status badge."""
    if texts:
        items = "".join(
            f"<li>{html.escape(text) or '<span class=slr-empty>(empty)</span>'}</li>" for text in texts
        )
        body = f"<ol>{items}</ol>"
    else:
        body = "<p class='slr-empty'>No samples yet.</p>"
    return (
        f"<div class='slr-samples'><div class='slr-samples-head {which}'><b>{html.escape(title)}</b>"
        f"<span class='slr-badge'>{html.escape(badge)}</span></div>{body}</div>"
    )


def statistics_markdown(statistics: dict[str, float] | None, num_samples: int) -> str:
    """Sample statistics as a small table ("" while sampling)."""
    if statistics is None:
        return ""
    rows = ["| metric | value |", "|---|---|"]
    for name, value in statistics.items():
        shown = f"{value} / {num_samples}" if name == "distinct answers" else f"{value:.3f}"
        rows.append(f"| {name} | {shown} |")
    return "\n".join(rows)


@dataclass
class ComparePanel:
    """What the compare columns show while samples stream in."""

    interval: tuple[int, int]
    settings: SamplingSettings
    include_pre: bool
    valid: tuple[str, ...] | None  # the prompt's valid CRC answers, if it is a CRC-style prompt
    restoration: Restoration | None = None  # a partial, free-form or fractional hybrid, if not the interval
    texts: dict[str, list[str]] = field(default_factory=dict)
    badges: dict[str, str] = field(default_factory=dict)
    statistics: dict[str, dict] = field(default_factory=dict)
    current: str | None = None

    @property
    def models(self) -> list[str]:
        """The columns in order."""
        return ["post", "hybrid", "pre"] if self.include_pre else ["post", "hybrid"]

    def title(self, which: str) -> str:
        """A column's heading."""
        start, end = self.interval
        label = self.restoration.label if self.restoration is not None else f"[{start}, {end}]"
        return f"SLR hybrid {label}" if which == "hybrid" else MODEL_TITLES[which]

    def fill(self, stream: Callable[[str], Iterator[list[str]]]) -> Iterator[str]:
        """Sample each column in turn from `stream(which)`; yields the column that changed.

        While a column streams, `self.current` names it (for an error message).
        """
        for which in self.models:
            began, self.current, self.badges[which] = time.monotonic(), which, "sampling…"
            for texts in stream(which):
                self.texts[which] = texts
                yield which
            self.badges[which] = f"done in {time.monotonic() - began:.1f} s"
            self.statistics[which] = sample_statistics(self.texts.get(which, []))
            yield which

    def column(self, which: str) -> tuple[str, str, object | None]:
        """One column: samples HTML, statistics Markdown, and a CRC answer histogram once done (else None)."""
        badge = self.badges.get(which, "queued")
        samples = samples_html(which, self.title(which), self.texts.get(which), badge)
        statistics = statistics_markdown(self.statistics.get(which), self.settings.num_samples)
        histogram = None
        if self.valid is not None and which in self.statistics:
            answers = crc_answers(self.texts.get(which, []), self.valid)
            histogram = figures.crc_histogram(*answers, self.valid, "answers to this CRC prompt")
        return samples, statistics, histogram
