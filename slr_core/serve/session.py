"""One visitor's view of a pair, in plain Python: the landscape shown, rule, selection, and what to draw.

The web app keeps a SessionView per visitor and a ComparePanel per comparison, and puts what they
return into its components; nothing here imports a web UI.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

from slr_core import inputs
from slr_core.crc.prompts import CRCPrompt, EncodedPrompts
from slr_core.engine.cached_sweep import (
    is_complete,
    missing_intervals,
    result_count,
    result_names,
    stored_landscape,
)
from slr_core.errors import InputError
from slr_core.models.loading import ModelPair
from slr_core.models.presets import PRESETS
from slr_core.models.settings import DEFAULT_Q_FRACTION
from slr_core.report import figures
from slr_core.report.evaluation_plan import plan_markdown
from slr_core.report.modes import modes_figure, modes_markdown
from slr_core.report.summary import references_markdown, summary_markdown, usable_rule
from slr_core.serve.registry import PairKey
from slr_core.slr.hybrid import Restoration, interval_restoration
from slr_core.slr.intervals import RESTORE_MODES, check_interval, check_mode, parse_layers
from slr_core.slr.landscape import DEFAULT_RULE, Landscape, Point

QUALITY_MAPS = ("strict_quality", "quality")  # what the quality heatmap can show
DRAW_SHARE = 0.1  # a running sweep spends at most this share of its wall time redrawing the page
CUSTOM = "custom (type sources below)"


def default_sources() -> tuple[str, str]:
    """The pair a new visitor sees: $SLR_PRE/$SLR_POST, a hub preset on a Space, else the demo pair."""
    if os.environ.get("SLR_PRE") and os.environ.get("SLR_POST"):
        return os.environ["SLR_PRE"], os.environ["SLR_POST"]
    if os.environ.get("SPACE_ID"):
        hub = next(preset for preset in PRESETS.values() if not preset.offline)
        return hub.pre, hub.post
    return "demo:pre", "demo:post"


def loading_note(pre: str, post: str) -> str:
    """What the page says until its pair is loaded (the server loads it in the background)."""
    if (pre, post) == ("demo:pre", "demo:post"):
        return (
            "⏳ **Loading the demo pair** (Gemma-3-270m base + SLR Explorer's demo tuning). The first start "
            "builds its weights from the GGUF, a minute or two on a CPU; later starts take seconds. "
            "The maps appear here when it is ready."
        )
    return f"⏳ **Loading the model pair** `{html.escape(pre)}` / `{html.escape(post)}`…"


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
        landscape,
        intervals=dict(landscape.intervals),
        soup=dict(landscape.soup),
        meta=dict(landscape.meta),
        coarse=set(landscape.coarse),
    )


def merge(base: Landscape, update: Landscape) -> Landscape:
    """`base` with every result of `update` added (update wins)."""
    merged = snapshot(base)
    merged.post, merged.pre = update.post or base.post, update.pre or base.pre
    merged.intervals.update(update.intervals)
    merged.soup.update(update.soup)
    merged.meta.update(update.meta)
    # What the update brings replaces the base's coarse marks; the update's own marks stand.
    replaced = set(update.intervals) | {name for name in ("post", "pre") if getattr(update, name) is not None}
    merged.coarse = (merged.coarse - replaced) | update.coarse
    return merged


def in_turns(steps: Iterator[Landscape], turn: AbstractContextManager) -> Iterator[Landscape]:
    """Run a sweep one step at a time inside `turn` (e.g. a lock), yielding a snapshot after each step."""
    while True:
        with turn:
            landscape = next(steps, None)
        if landscape is None:
            return
        yield snapshot(landscape)


def same_pair(landscape: Landscape, pair: ModelPair) -> Landscape:
    """`landscape` if it was computed for `pair` (its fingerprints), else InputError: never mix two pairs."""
    fingerprints = (landscape.meta.get("pre_fingerprint"), landscape.meta.get("post_fingerprint"))
    if fingerprints != (pair.pre_fingerprint, pair.post_fingerprint):
        raise InputError(f"Another pair was loaded meanwhile, so {pair.label} is no longer shown: try again.")
    return landscape


def stored_landscapes(pair: ModelPair, encoded: EncodedPrompts) -> dict[str, Landscape]:
    """Every restore mode's landscape as far as the cache holds it."""
    return {mode: stored_landscape(pair, encoded, mode) for mode in RESTORE_MODES}


def evaluation_plan(view: SessionView, registry, task: str, quick: bool, temperatures) -> str:
    """The Evaluate tab's note before a run: what it will sample and about how long it takes (the
    view's pair from `registry`, a serve.registry.PairRegistry, when it is loaded)."""
    pair = registry.get(view.key, load=False).pair if view.key is not None and view.key in registry else None
    landscape = view.all_modes().get("layer")
    complete = landscape is not None and is_complete(landscape)
    num_params = sum(p.numel() for p in pair.post.parameters()) if pair is not None else 268e6
    device = pair.device.type if pair is not None else "cpu"
    return plan_markdown(
        task, bool(quick), temperatures or [], landscape if complete else None, num_params, device
    )


def evaluation_settings(temperatures, seed) -> tuple[list[float], int]:
    """Checked temperatures (sorted, distinct, 1 to inputs.MAX_TEMPERATURES) and seed of an evaluation request."""
    return inputs.temperatures(temperatures or []), inputs.seed(seed)


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
    prompt_set: str = "paper"  # the shown prompt set's name (serve.prompt_choice)
    prompts: tuple[CRCPrompt, ...] | None = None  # its prompts; None: the paper's set

    def show_prompts(
        self, name: str, prompts: tuple[CRCPrompt, ...] | None, landscapes: dict[str, Landscape]
    ) -> bool:
        """Show another prompt set's landscapes (every mode's, as far as the cache holds them); a running
        sweep of the last set stops. True when the shown one is complete."""
        self.prompt_set, self.prompts = name, prompts
        self.landscapes, self.landscape = landscapes, landscapes[self.mode]
        self.selected, self.lambda_slice, self.generation = None, None, self.generation + 1
        return is_complete(self.landscape)

    def show_pair(self, key: PairKey, landscapes: dict[str, Landscape]) -> bool:
        """Show a newly loaded pair with every mode's stored landscape; True when the shown one is complete."""
        self.key, self.landscapes, self.landscape = key, landscapes, landscapes[self.mode]
        self.selected, self.lambda_slice, self.generation = None, None, self.generation + 1
        return is_complete(self.landscape)

    def pinned(self, pair: ModelPair) -> Landscape:
        """The shown landscape for an export's card: `pair`'s (a load in another request may have replaced
        it), and not a first look (the card reports full-set numbers)."""
        if self.landscape.coarse:
            raise InputError(
                "The landscape is still a first look on a few prompts: wait for the full pass (the exported "
                "model card reports its numbers), then export."
            )
        return same_pair(self.landscape, pair)

    def show_mode(self, mode: str, landscape: Landscape) -> None:
        """Show restore mode `mode` with its landscape (from the cache); a running sweep of the last one stops."""
        if self.landscape is not None:
            self.landscapes[self.mode] = self.landscape
        self.mode, self.landscape, self.lambda_slice = check_mode(mode), landscape, None
        self.generation += 1

    def slice_reference(self) -> Point | None:
        """The post-trained point a lambda slice may reuse at lambda = 0: only one from the full prompt
        set (during a first look it is on a few prompts, and the slice's other points are on all)."""
        if self.landscape is None or "post" in self.landscape.coarse:
            return None
        return self.landscape.post

    def restoration(self, layers: str = "", fraction: float = 1.0) -> Restoration:
        """What compare and export use: typed layers (e.g. '3,5,9-11') or the selection, in the shown mode."""
        if layers and layers.strip():
            chosen = parse_layers(layers, self.landscape.num_layers)
            return Restoration(chosen, self.mode, float(fraction)).check(self.landscape.num_layers)
        if self.selected is None:
            raise InputError("Click a heatmap cell (or type an interval or layers) to choose the hybrid.")
        restoration = interval_restoration(*self.selected, self.mode, float(fraction))
        return restoration.check(self.landscape.num_layers)

    def crc_point(self, restoration: Restoration) -> Point | None:
        """The shown landscape's CRC numbers of `restoration` when it is one of its intervals (full λ)."""
        interval = restoration.interval
        if self.landscape is None or interval is None or restoration.fraction != 1:
            return None
        if restoration != interval_restoration(*interval, self.mode):
            return None
        return self.landscape.intervals.get(interval)

    def chosen(self, start, end, layers: str = "", fraction: float | None = 1.0) -> Restoration:
        """The hybrid to export: typed layers, else the typed interval, in the shown mode at `fraction`."""
        fraction = 1.0 if fraction is None else float(fraction)
        if (layers or "").strip():
            return self.restoration(layers, fraction)
        restoration = interval_restoration(*self.interval(start, end), self.mode, fraction)
        return restoration.check(self.landscape.num_layers)

    def evaluation_landscape(self, pair: ModelPair) -> Landscape:
        """`pair`'s whole-layer landscape, which the evaluation picks from; InputError while it is incomplete."""
        landscape = self.all_modes().get("layer")
        if landscape is None or not is_complete(landscape):
            raise InputError(
                "The CRC landscape of this pair is not complete yet: wait for the sweep, then evaluate."
            )
        return same_pair(landscape, pair)

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
        """A clicked or typed interval, checked against the landscape's depth (SLRError if bad)."""
        try:
            interval = (int(start), int(end))
        except (TypeError, ValueError) as error:
            raise InputError(
                "Choose an interval: click a heatmap cell, or type start i and end j."
            ) from error
        check_interval(*interval, self.landscape.num_layers)
        return interval

    def missing(self) -> set[tuple[int, int]]:
        """The intervals the view's landscape still lacks, or holds only coarse (prompt-subset) results of."""
        return missing_intervals(self.landscape)

    def progress(self) -> tuple[int, int]:
        """(results the landscape holds, results of a full landscape)."""
        return result_count(self.landscape), len(result_names(self.landscape.num_layers))

    def follow(self, steps: Iterator[Landscape], every: float, share: float = DRAW_SHARE) -> Iterator[bool]:
        """Merge a sweep's snapshots into the view; yields True (running) when a redraw is due, then False.

        The caller redraws between a yield and the next step, so the time until it asks again is the
        redraw's cost: the next redraw waits at least `every` s and long enough that redraws take at
        most `share` of the wall time (on a 2-core CPU a full redraw costs as much as many sweep steps).
        The step that completes the map is drawn at once. Stops early, yielding nothing more, once
        another pair is shown (`generation` changed).
        """
        generation, base, due, filled = self.generation, self.landscape, 0.0, False
        for update in steps:
            if self.generation != generation:
                return  # the visitor switched pairs; the cache keeps what was computed
            self.landscape = merge(base, update)
            size = self.landscape.num_layers * (self.landscape.num_layers + 1) // 2
            completes = not filled and len(self.landscape.intervals) == size
            if time.monotonic() >= due or completes:
                filled = filled or completes
                began = time.monotonic()
                yield True
                cost = time.monotonic() - began
                due = time.monotonic() + max(every, cost * (1 - share) / share)
        if self.generation == generation:
            yield False

    def drawing(self, drift: list[float] | None) -> dict:
        """Everything the page draws from the view, by component name: the three maps, trade-off and
        drift plots, references, summaries and the interval boxes (the suggested interval)."""
        maps, suggested = self.heatmaps(), self.suggested()
        return {
            **{f"heat_{name}": figure for name, figure in maps.items()},
            "tradeoff": self.tradeoff(),
            "references": self.references(),
            "summary": self.summary(),
            "modes_summary": self.modes_summary(),
            "modes_plot": self.modes_figure(),
            "drift": figures.drift_figure(drift, suggested) if drift is not None else None,
            "start": suggested[0] if suggested else None,
            "end": suggested[1] if suggested else None,
        }

    def heatmaps(self) -> dict[str, str]:
        """Figure JSON of the quality (Q or strict Q), diversity and stop-rate maps, keyed by map."""
        best, metrics = (
            self.best(),
            {"quality": self.shown_quality_map, "diversity": "diversity", "stop": "stop"},
        )
        shown_set = None if self.prompts is None else self.prompt_set  # named on the maps unless the default
        return {
            name: figures.heatmap_figure(
                self.landscape, metric, best, self.selected, prompt_set=shown_set
            ).to_json()
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
        """Post, pre, best, soup and selection under the shown rule, and the prompt set (Markdown)."""
        text = references_markdown(self.landscape, self.q_fraction, self.rule, self.selected)
        return text if self.landscape is None else f"{text}\n\nPrompt set: **{html.escape(self.prompt_set)}**"

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
        f"post-trained `{pair.post_source.spec}` · {pair.precision} on {pair.device.type}"
    )
