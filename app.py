"""SLR Explorer's web app: the CRC landscape of a model pair, click-to-compare samples, export, evaluation.

Run `python app.py` (see --help). The app is a thin layer over slr_core: handlers read the page's
values, call the library and format what comes back. Per-visitor state lives in gr.State; loaded
model pairs are shared read-only through a small registry, and every request builds its own hybrid.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import os
import queue
import re
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

if os.environ.get("SPACES_ZERO_GPU") and importlib.util.find_spec("spaces") is not None:
    import spaces  # noqa: F401  (ZeroGPU wants it imported before torch initialises CUDA)

import gradio as gr
import pandas

from slr_core import figures
from slr_core.crc import valid_answers
from slr_core.errors import SLRError
from slr_core.hybrid import build_hybrid, check_interval
from slr_core.landscape import Landscape, Point
from slr_core.metrics import answer_counts, crc_answers, distinct_n, embedding_dissimilarity
from slr_core.models import ModelPair, Settings
from slr_core.presets import PRESETS
from slr_core.registry import FairLock, LoadedPair, PairKey, PairRegistry
from slr_core.sampling import SamplingSettings, sample
from slr_core.soup import ALPHAS
from slr_core.survey import all_intervals, is_complete, result_count, result_names, stored_landscape, survey

ASSETS = Path(__file__).resolve().parent / "assets"
PLOTLY_JS = Path(importlib.util.find_spec("plotly").origin).parent / "package_data" / "plotly.min.js"
CUSTOM = "custom (type sources below)"
DEFAULT_Q_FRACTION = 0.9
UPDATE_SECONDS = 0.6  # at most this often a running sweep redraws the page
STREAM_SECONDS = 0.25  # ... and streaming samples update their column
EXAMPLE_PROMPTS = [
    "Generate a random integer in the range [0, 9]. Do not include anything else in your reply.",
    "Name a US state. Reply with the name only.",
    "Write a short poem (four lines) about the sea.",
    "Tell me a joke.",
]
MODEL_TITLES = {"post": "Post-trained", "hybrid": "SLR hybrid", "pre": "Pre-trained"}


# ---------------------------------------------------------------- configuration


def on_zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space with the `spaces` package installed."""
    return bool(os.environ.get("SPACES_ZERO_GPU")) and importlib.util.find_spec("spaces") is not None


def gpu(duration: int) -> Callable:
    """spaces.GPU(duration=...) on ZeroGPU, so the call gets a GPU; a no-op decorator elsewhere."""
    if on_zero_gpu():
        import spaces

        return spaces.GPU(duration=duration)
    return lambda function: function


def export_root() -> Path:
    """The operator's export folder: $SLR_EXPORT_DIR, default ./exports (never a visitor's path)."""
    return Path(os.environ.get("SLR_EXPORT_DIR", "exports")).expanduser().resolve()


def default_sources() -> tuple[str, str]:
    """The pair a new visitor sees: $SLR_PRE/$SLR_POST, a hub preset on a Space, else the demo pair."""
    if os.environ.get("SLR_PRE") and os.environ.get("SLR_POST"):
        return os.environ["SLR_PRE"], os.environ["SLR_POST"]
    if os.environ.get("SPACE_ID"):
        hub = next(preset for preset in PRESETS.values() if not preset.offline)
        return hub.pre, hub.post
    return "demo:pre", "demo:post"


def preset_choices() -> list[str]:
    """Preset names for the picker; hub pairs first on a Space, the offline demo first elsewhere."""
    names = (
        sorted(PRESETS, key=lambda name: PRESETS[name].offline)
        if os.environ.get("SPACE_ID")
        else list(PRESETS)
    )
    return [*names, CUSTOM]


def preset_for(pre: str, post: str) -> str:
    """The preset name with these sources, or the custom entry."""
    return next((name for name, p in PRESETS.items() if (p.pre, p.post) == (pre, post)), CUSTOM)


SETTINGS = Settings()  # replaced by main() from --device/--dtype
# Gradio finds a handler's progress tracker by its default value (one shared instance, as a default would be).
PROGRESS = gr.Progress()
TRACKED_PROGRESS = gr.Progress(track_tqdm=True)


# ---------------------------------------------------------------- shared model pairs


# Model compute in this process takes turns: sampling seeds torch's global RNG (so two samplers
# at once would not reproduce), and a sweep's capture pass hooks the shared layer modules (so a
# concurrent forward through them would corrupt it). A sweep holds it one step at a time.
# ZeroGPU runs each call in its own worker process, where the lock is neither needed nor safe.
DEVICE_LOCK = FairLock()


def device_turn():
    """The context that gives one model computation its turn on the device."""
    return nullcontext() if on_zero_gpu() else DEVICE_LOCK


REGISTRY = PairRegistry(int(os.environ.get("SLR_MAX_PAIRS", "2")))


# ---------------------------------------------------------------- landscape


@dataclass
class SessionView:
    """One visitor's view; mutated in place, so a running sweep draws the latest selection."""

    key: PairKey | None = None
    landscape: Landscape | None = None
    q_fraction: float = DEFAULT_Q_FRACTION
    selected: tuple[int, int] | None = None
    generation: int = 0  # bumped when another pair is shown, which stops a stale sweep


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


@gpu(duration=600)
def sweep_steps(key: PairKey, missing: set[tuple[int, int]]) -> Iterator[Landscape]:
    """Compute what the cache lacks (references, intervals, soup), yielding snapshots as results come."""
    entry = REGISTRY.get(key)
    steps = survey(entry.pair, entry.encoded, intervals=missing, soup=True)
    while True:
        with device_turn():
            landscape = next(steps, None)
        if landscape is None:
            return
        yield snapshot(landscape)


def best_interval(view: SessionView) -> tuple[int, int] | None:
    """The landscape's selected interval at the view's q_min (None before the references exist)."""
    landscape = view.landscape
    if landscape is None or landscape.post is None:
        return None
    return landscape.best_interval(landscape.q_min(view.q_fraction))


def references_markdown(view: SessionView) -> str:
    """Reference values beside the maps: post, pre, best interval, Proxy-Soup, selection, q_min."""
    landscape = view.landscape
    if landscape is None:
        return "No pair loaded yet."
    rows = ["| CRC | Q | D |", "|---|---|---|"]
    post = landscape.post

    def row(name: str, point: Point | None) -> None:
        if point is None:
            return
        if post is None or point is post:
            rows.append(f"| {name} | {point.quality:.3f} | {point.diversity:.3f} |")
        else:
            quality_change, diversity_change = point.quality - post.quality, point.diversity - post.diversity
            rows.append(
                f"| {name} | {point.quality:.3f} ({quality_change:+.3f}) | "
                f"{point.diversity:.3f} ({diversity_change:+.3f}) |"
            )

    row("**Post-trained**", post)
    row("**Pre-trained**", landscape.pre)
    best = best_interval(view)
    if best is not None:
        row(f"**Best SLR [{best[0]}, {best[1]}]** ★", landscape.intervals[best])
    if post is not None and landscape.soup:
        alpha = landscape.best_alpha(landscape.q_min(view.q_fraction))
        if alpha is not None:
            row(f"Proxy-Soup α = {alpha:.2f}", landscape.soup[alpha])
    if view.selected is not None and view.selected in landscape.intervals:
        row(f"Selected [{view.selected[0]}, {view.selected[1]}] ▢", landscape.intervals[view.selected])
    lines = ["\n".join(rows)]
    if post is not None:
        q_min = landscape.q_min(view.q_fraction)
        lines.append(f"q_min = {view.q_fraction:.2f} × Q_post = **{q_min:.3f}**")
        if best is None and landscape.intervals:
            lines.append("No swept interval reaches q_min yet.")
    total = landscape.num_layers * (landscape.num_layers + 1) // 2
    lines.append(
        f"{len(landscape.intervals)} / {total} intervals · {len(landscape.soup)} / {len(ALPHAS)} soup α"
    )
    return "\n\n".join(lines)


def landscape_figures(view: SessionView) -> tuple[str, str, object]:
    """The two heatmaps (as JSON for the clickable HTML plots) and the trade-off scatter."""
    landscape, best = view.landscape, best_interval(view)
    q_min = landscape.q_min(view.q_fraction) if landscape.post is not None else None
    return (
        figures.heatmap_figure(landscape, "quality", best, view.selected).to_json(),
        figures.heatmap_figure(landscape, "diversity", best, view.selected).to_json(),
        figures.tradeoff_figure(landscape, q_min, best, view.selected),
    )


def render_view(view: SessionView, drift: list[float] | None) -> tuple:
    """Heatmaps, trade-off scatter, references and drift chart of the view."""
    heat_quality, heat_diversity, tradeoff = landscape_figures(view)
    drift_plot = (
        figures.drift_figure(drift, view.selected or best_interval(view)) if drift is not None else None
    )
    return heat_quality, heat_diversity, references_markdown(view), tradeoff, drift_plot


def pair_markdown(entry: LoadedPair) -> str:
    """The loaded pair's label and its sources."""
    pair = entry.pair
    return (
        f"**{html.escape(pair.label)}**\n\n"
        f"{pair.num_layers} decoder layers · pre-trained `{pair.pre_source.spec}` · "
        f"post-trained `{pair.post_source.spec}` · {str(pair.dtype).replace('torch.', '')} on {pair.device.type}"
    )


def status_markdown(landscape: Landscape, running: bool) -> str:
    """One line on the sweep: done, running, or queued."""
    done, total = result_count(landscape), len(result_names(landscape.num_layers))
    if done == total:
        return f"CRC landscape complete: {total} results (from the cache when swept before)."
    return f"{'Sweeping' if running else 'Waiting to sweep'}: {done} / {total} results (post, pre, intervals, soup)."


# ---------------------------------------------------------------- sampling


class SamplingStopped(Exception):
    """Raised inside generation when the visitor no longer waits for it."""


@gpu(duration=180)
def stream_samples(
    key: PairKey, which: str, interval: tuple[int, int], prompt: str, settings: SamplingSettings
) -> Iterator[list[str]]:
    """Partial sample texts as they grow (throttled), then the final ones, from one model of the pair."""
    pair = REGISTRY.get(key).pair
    if which == "hybrid":
        model = build_hybrid(pair, *interval)  # this request's own hybrid, sharing the weights
    else:
        model = pair.post if which == "post" else pair.pre
    updates: queue.Queue = queue.Queue()
    stop = threading.Event()

    def on_step(texts: list[str]) -> None:
        if stop.is_set():
            raise SamplingStopped
        updates.put(("partial", texts))

    def work() -> None:
        try:
            with device_turn():
                updates.put(("done", sample(model, pair.tokenizer, prompt, settings, on_step)))
        except SamplingStopped:
            updates.put(("done", None))
        except Exception as error:  # handed to the waiting generator, which re-raises it
            updates.put(("error", error))

    threading.Thread(target=work, daemon=True, name=f"sample-{which}").start()
    try:
        last_sent = 0.0
        while True:
            kind, payload = updates.get()
            if kind == "error":
                raise payload
            if kind == "done":
                if payload is not None:
                    yield payload
                return
            if time.monotonic() - last_sent >= STREAM_SECONDS:
                last_sent = time.monotonic()
                yield payload
    finally:
        stop.set()


def sample_statistics(texts: list[str]) -> dict[str, float]:
    """Distinct answers, distinct-1/-2 and mean pairwise embedding dissimilarity of samples."""
    return {
        "distinct answers": len(answer_counts(texts)),
        "distinct-1": distinct_n(texts, 1),
        "distinct-2": distinct_n(texts, 2),
        "embedding dissimilarity": embedding_dissimilarity(texts),
    }


def statistics_markdown(statistics: dict[str, float] | None, num_samples: int) -> str:
    """The statistics as a small table, or a placeholder while sampling."""
    if statistics is None:
        return ""
    rows = ["| metric | value |", "|---|---|"]
    for name, value in statistics.items():
        shown = f"{value} / {num_samples}" if name == "distinct answers" else f"{value:.3f}"
        rows.append(f"| {name} | {shown} |")
    return "\n".join(rows)


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


@dataclass
class ComparePanel:
    """What the compare columns show while sampling streams in."""

    interval: tuple[int, int]
    settings: SamplingSettings
    include_pre: bool
    valid: tuple[str, ...] | None
    texts: dict[str, list[str]] = field(default_factory=dict)
    badges: dict[str, str] = field(default_factory=dict)
    statistics: dict[str, dict] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        """The columns in order."""
        return ["post", "hybrid", "pre"] if self.include_pre else ["post", "hybrid"]

    def title(self, which: str) -> str:
        """A column's heading."""
        start, end = self.interval
        return f"SLR hybrid [{start}, {end}]" if which == "hybrid" else MODEL_TITLES[which]

    def render(self) -> list:
        """Values for every compare output: per model samples, statistics and histogram."""
        outputs = []
        for which in ("post", "hybrid", "pre"):
            if which not in self.models:
                outputs += [gr.skip(), gr.skip(), gr.skip()]
                continue
            badge = self.badges.get(which, "queued")
            outputs.append(samples_html(which, self.title(which), self.texts.get(which), badge))
            outputs.append(statistics_markdown(self.statistics.get(which), self.settings.num_samples))
            if self.valid is not None and which in self.statistics:
                answers = crc_answers(self.texts.get(which, []), self.valid)
                histogram = figures.crc_histogram(*answers, self.valid, "answers to this CRC prompt")
                outputs.append(gr.update(value=histogram, visible=True))
            else:
                outputs.append(gr.update(value=None, visible=False))
        return outputs


def compare_header(
    pair: ModelPair, interval: tuple[int, int], settings: SamplingSettings, prompt: str
) -> str:
    """Everything needed to reproduce the samples shown."""
    start, end = interval
    return (
        f"**Interval [{start}, {end}]** (layers {start}–{end} restored from the pre-trained model) · "
        f"seed **{settings.seed}** · {settings.num_samples} samples per model · min-p {settings.min_p} · "
        f"temperature {settings.temperature} · max {settings.max_new_tokens} new tokens\n\n"
        f"Pair: {html.escape(pair.label)} · prompt: “{html.escape(prompt)}”"
    )


def sampling_settings(num_samples, min_p, temperature, max_new_tokens, seed) -> SamplingSettings:
    """SamplingSettings from the page's values; bad values become a clear gr.Error."""
    try:
        return SamplingSettings(
            int(num_samples), float(min_p), float(temperature), int(max_new_tokens), int(seed)
        )
    except (TypeError, ValueError) as error:
        raise gr.Error(f"Sampling settings: {error}.") from error


# ---------------------------------------------------------------- export and evaluation


def export_name(pair: ModelPair, interval: tuple[int, int]) -> str:
    """A folder name from the post-trained source, interval and the pair's fingerprints (no visitor text)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(pair.post_source.spec).name.replace(":", "-")).strip("-.")
    digest = re.sub(r"[^0-9a-f]", "", (pair.pre_fingerprint + pair.post_fingerprint).lower())[-10:]
    return f"{stem or 'model'}-slr-{interval[0]}-{interval[1]}-{digest}"


def zip_folder(folder: Path) -> Path:
    """folder.zip beside the folder, written to a temporary name and renamed into place."""
    target = folder.with_suffix(".zip")
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.{threading.get_ident()}.zip")
    try:
        # Weights barely compress: store them, so zipping a GB takes seconds, not minutes.
        with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, Path(folder.name) / path.relative_to(folder))
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
    return target


def export_interval(entry: LoadedPair, landscape: Landscape | None, interval: tuple[int, int]) -> Path:
    """Export hybrid `interval` into the operator's export folder and zip it; returns the zip."""
    from slr_core.export import export_hybrid

    folder = export_root() / export_name(entry.pair, interval)
    command = f"SLR Explorer app: export hybrid [{interval[0]}, {interval[1]}] of {entry.pair.label}"
    written = export_hybrid(entry.pair, *interval, folder, landscape, True, command)
    return zip_folder(Path(written))


@gpu(duration=600)
def evaluation_results(
    key: PairKey, landscape: Landscape, task: str, quick: bool, temperatures, seed: int
) -> dict:
    """slr_core.evaluation.run_evaluation on the session's pair and landscape."""
    from slr_core.evaluation import run_evaluation

    with device_turn():
        return run_evaluation(REGISTRY.get(key).pair, landscape, task, quick, temperatures, seed)


# ---------------------------------------------------------------- handlers


def require_pair(view: SessionView) -> LoadedPair:
    """The session's loaded pair, or a gr.Error asking to load one."""
    if view.key is None:
        raise gr.Error("No model pair is loaded yet: pick one above and press Load.")
    return REGISTRY.get(view.key)


def require_interval(view: SessionView, entry: LoadedPair, start, end) -> tuple[int, int]:
    """The interval typed or clicked, validated against the pair's depth."""
    try:
        interval = (int(start), int(end))
        check_interval(*interval, entry.pair.num_layers)
    except (TypeError, ValueError) as error:
        raise gr.Error("Choose an interval: click a heatmap cell, or type start i and end j.") from error
    except SLRError as error:
        raise gr.Error(str(error)) from error
    return interval


def show_pair(view: SessionView, pre: str, post: str, progress=TRACKED_PROGRESS) -> tuple:
    """Load (or reuse) a pair and show its cached landscape; a changed token asks for a sweep."""
    key = (pre.strip(), post.strip(), SETTINGS)
    if not key[0] or not key[1]:
        raise gr.Error("Give both a pre-trained and a post-trained model source.")
    if key not in REGISTRY:
        progress(0.05, desc=f"Loading {key[0]} and {key[1]} (the first load of a pair takes a while)")
    try:
        entry = REGISTRY.get(key)
    except SLRError as error:
        raise gr.Error(str(error)) from error
    landscape = stored_landscape(entry.pair, entry.encoded)
    view.key, view.landscape, view.selected = key, landscape, None
    view.generation += 1
    sweep_token = f"{view.generation}:{time.time()}" if not is_complete(landscape) else gr.skip()
    return (
        *render_view(view, entry.drift),
        *interval_boxes(view),
        pair_markdown(entry),
        status_markdown(landscape, running=False),
        gr.update(value=None, visible=False),
        sweep_token,
    )


def interval_boxes(view: SessionView) -> tuple:
    """The start/end boxes: the selection, else the best interval so far, else empty."""
    interval = view.selected or best_interval(view)
    return interval if interval is not None else (None, None)


def start_session(view: SessionView, progress=TRACKED_PROGRESS) -> tuple:
    """A new visitor: show the default pair."""
    return show_pair(view, *default_sources(), progress=progress)


def pick_preset(name: str) -> tuple:
    """Fill the source boxes from a preset (custom leaves them as typed)."""
    if name not in PRESETS:
        return gr.skip(), gr.skip()
    return PRESETS[name].pre, PRESETS[name].post


def run_sweep(view: SessionView, progress=PROGRESS) -> Iterator[tuple]:
    """Sweep what the cache lacks, redrawing maps, references, scatter and status as results come."""
    if view.key is None or view.landscape is None or is_complete(view.landscape):
        return
    key, generation, base = view.key, view.generation, view.landscape
    missing = all_intervals(base.num_layers) - set(base.intervals)
    total = len(result_names(base.num_layers))
    # One bar, set directly: under track_tqdm, Gradio advances the newest tqdm bar on every update,
    # so an outer bar here would count into the survey's inner one ("19/10 interval").
    progress((result_count(base), total), desc="CRC landscape", unit="result")
    last_drawn = 0.0
    try:
        for update in sweep_steps(key, missing):
            if view.generation != generation:
                return  # the visitor switched pairs; the cache keeps what was computed
            view.landscape = merge(base, update)
            progress((result_count(view.landscape), total), desc="CRC landscape", unit="result")
            if time.monotonic() - last_drawn >= UPDATE_SECONDS:
                last_drawn = time.monotonic()
                yield sweep_update(view, running=True)
    except SLRError as error:
        raise gr.Error(f"The sweep stopped: {error} Results so far are kept in the cache.") from error
    except Exception as error:
        message = (
            f"The sweep stopped unexpectedly ({type(error).__name__}: {error}). Results so far are kept."
        )
        raise gr.Error(message) from error
    if view.generation == generation:
        yield sweep_update(view, running=False)


def sweep_update(view: SessionView, running: bool) -> tuple:
    """What a sweep redraws: maps, scatter, references, status, suggested interval and drift highlight."""
    heat_quality, heat_diversity, references, tradeoff, drift = render_view(
        view, REGISTRY.get(view.key).drift
    )
    status = status_markdown(view.landscape, running)
    return heat_quality, heat_diversity, tradeoff, references, status, *interval_boxes(view), drift


def select_cell(view: SessionView, event: gr.SelectData) -> tuple:
    """A heatmap cell was clicked: select that interval and redraw the markers."""
    entry = require_pair(view)
    view.selected = require_interval(view, entry, *event.index)
    return (*render_view(view, entry.drift), *view.selected)


def select_typed(view: SessionView, start, end) -> tuple:
    """Select the typed interval."""
    entry = require_pair(view)
    view.selected = require_interval(view, entry, start, end)
    return (*render_view(view, entry.drift), *view.selected)


def select_best(view: SessionView) -> tuple:
    """Select the best interval at the current q_min."""
    entry = require_pair(view)
    best = best_interval(view)
    if best is None:
        raise gr.Error("No swept interval reaches q_min yet: lower q_min or wait for the sweep.")
    view.selected = best
    return (*render_view(view, entry.drift), *best)


def change_q_fraction(view: SessionView, fraction: float) -> tuple:
    """A new q_min fraction: the best interval and its markers move."""
    view.q_fraction = float(fraction)
    if view.key is None or view.landscape is None:
        return (gr.skip(),) * 7
    return (*render_view(view, REGISTRY.get(view.key).drift), *interval_boxes(view))


def compare(view, prompt, num_samples, min_p, temperature, max_new_tokens, seed, include_pre) -> Iterator:
    """Sample the post-trained model, the selected hybrid (and the pre-trained one), streaming."""
    entry = require_pair(view)
    if view.selected is None:
        raise gr.Error("Click a heatmap cell (or type an interval) to choose the hybrid to compare.")
    prompt = (prompt or "").strip()
    if not prompt:
        raise gr.Error("Write a prompt first (or pick an example).")
    settings = sampling_settings(num_samples, min_p, temperature, max_new_tokens, seed)
    panel = ComparePanel(view.selected, settings, bool(include_pre), valid_answers(prompt))
    header = compare_header(entry.pair, view.selected, settings, prompt)
    yield header, *panel.render()
    for which in panel.models:
        began = time.monotonic()
        panel.badges[which] = "sampling…"
        try:
            for texts in stream_samples(view.key, which, panel.interval, prompt, settings):
                panel.texts[which] = texts
                yield header, *panel.render()
        except Exception as error:  # e.g. out of memory; the other columns keep their samples
            raise gr.Error(
                f"Sampling the {panel.title(which)} failed: {type(error).__name__}: {error}"
            ) from error
        panel.badges[which] = f"done in {time.monotonic() - began:.1f} s"
        panel.statistics[which] = sample_statistics(panel.texts.get(which, []))
        yield header, *panel.render()


def export_selected(view: SessionView, start, end, progress=PROGRESS) -> tuple:
    """Export the chosen hybrid as a Hugging Face model folder and offer it as a zip."""
    entry = require_pair(view)
    interval = require_interval(view, entry, start, end)
    progress(0.1, desc=f"Writing hybrid [{interval[0]}, {interval[1]}]")
    try:
        archive = export_interval(entry, view.landscape, interval)
    except ImportError as error:
        raise gr.Error("Export is not available in this build (slr_core.export.export_hybrid).") from error
    except (SLRError, OSError) as error:
        raise gr.Error(f"Export failed: {error}") from error
    note = (
        f"Exported hybrid [{interval[0]}, {interval[1]}] to the server's export folder as `{archive.name}`."
    )
    return gr.update(value=str(archive), visible=True), note


def evaluate(view, task, quick, temperatures, seed, progress=TRACKED_PROGRESS) -> tuple:
    """Run the downstream evaluation on the session's pair; table, Figure-3-style bars and notes."""
    require_pair(view)
    landscape = view.landscape
    if landscape is None or not is_complete(landscape):
        raise gr.Error(
            "The CRC landscape of this pair is not complete yet: wait for the sweep, then evaluate."
        )
    if not temperatures:
        raise gr.Error("Pick at least one temperature.")
    try:
        from slr_core.evaluation import figure_data, format_table, results_frame
    except ImportError as error:
        raise gr.Error("Evaluation is not available in this build (slr_core.evaluation).") from error
    try:
        results = evaluation_results(
            view.key, landscape, task, bool(quick), sorted(map(float, temperatures)), int(seed)
        )
    except SLRError as error:
        raise gr.Error(str(error)) from error
    table = pandas.DataFrame(results_frame(results))
    return table, figures.evaluation_figure(figure_data(results)), f"```\n{format_table(results)}\n```"


# ---------------------------------------------------------------- page


HEADER = """
<div id="slr-header">
<h1>SLR Explorer</h1>
<p><b>Selective Layer Restoration</b>: take a post-trained (instruction-tuned) model and put decoder layers
<i>i</i>…<i>j</i> back to their pre-trained weights. Some intervals bring back the diversity post-training
removed while keeping answers valid. The CRC proxy measures both for every interval: <b>Q</b>, the probability
mass on valid answers to "random digit/letter" requests, and <b>D</b>, the entropy over those valid answers.</p>
<p>Click any cell of the maps to sample from that hybrid next to the post-trained model.</p>
</div>
"""


def heatmap_component(elem_id: str) -> gr.HTML:
    """A clickable Plotly heatmap: its value is the figure's JSON, drawn by assets/heatmap.js."""
    return gr.HTML(
        value=None,
        html_template='<div class="slr-heatmap-plot"></div>',
        js_on_load=(ASSETS / "heatmap.js").read_text(),
        head=f'<script src="/gradio_api/file={PLOTLY_JS}"></script>',
        elem_id=elem_id,
        min_height=430,
        apply_default_css=False,
    )


def build_app() -> gr.Blocks:
    """The whole page and its events."""
    gr.set_static_paths([str(PLOTLY_JS), str(export_root())])
    default_pre, default_post = default_sources()
    with gr.Blocks(title="SLR Explorer") as demo:
        view = gr.State(SessionView())
        sweep_token = gr.State("")
        gr.HTML(HEADER, js_on_load=None)
        with gr.Accordion("Model pair", open=False):
            with gr.Row(equal_height=True):
                preset = gr.Dropdown(
                    preset_choices(), value=preset_for(default_pre, default_post), label="Preset", scale=2
                )
                pre_box = gr.Textbox(
                    default_pre, label="Pre-trained model (hub id, folder or .gguf)", scale=3
                )
                post_box = gr.Textbox(default_post, label="Post-trained model", scale=3)
                load_button = gr.Button("Load pair", variant="primary", scale=1)
        pair_info = gr.Markdown("Loading the model pair…", elem_id="slr-pair-label")
        with gr.Tab("Explore"):
            with gr.Row():
                heat_quality = heatmap_component("heatmap-quality")
                heat_diversity = heatmap_component("heatmap-diversity")
                with gr.Column(min_width=300, scale=0):
                    references = gr.Markdown(elem_id="slr-references")
                    q_fraction = gr.Slider(
                        0.5, 1.0, DEFAULT_Q_FRACTION, step=0.01, label="q_min / Q_post (quality kept)"
                    )
                    with gr.Row():
                        start_box = gr.Number(None, label="start i", precision=0, minimum=0)
                        end_box = gr.Number(None, label="end j", precision=0, minimum=0)
                    with gr.Row():
                        best_button = gr.Button("Select best ★", size="sm")
                        compare_button = gr.Button("Compare", variant="primary", size="sm")
                    export_button = gr.Button("Export this hybrid (zip)", size="sm")
                    export_file = gr.File(label="Exported hybrid", visible=False)
                    export_note = gr.Markdown()
            sweep_status = gr.Markdown(elem_id="slr-sweep-status")
            with gr.Row():
                tradeoff_plot = gr.Plot(show_label=False)
                drift_plot = gr.Plot(show_label=False)
            gr.Markdown("### Compare samples")
            with gr.Row():
                prompt = gr.Textbox(EXAMPLE_PROMPTS[0], label="Prompt", lines=2, scale=4)
                with gr.Column(scale=1, min_width=220):
                    include_pre = gr.Checkbox(False, label="Also sample the pre-trained model")
                    sample_button = gr.Button("Sample again", variant="secondary")
            gr.Examples([[text] for text in EXAMPLE_PROMPTS], inputs=[prompt], label="Example prompts")
            with gr.Accordion("Sampling settings", open=False):
                with gr.Row():
                    num_samples = gr.Slider(1, 32, 8, step=1, label="samples per model")
                    min_p = gr.Slider(0.0, 0.5, 0.1, step=0.01, label="min-p")
                    temperature = gr.Slider(0.1, 2.0, 1.0, step=0.05, label="temperature")
                    max_new_tokens = gr.Slider(8, 256, 48, step=8, label="max new tokens")
                    seed = gr.Number(0, label="seed", precision=0)
            compare_info = gr.Markdown(elem_id="slr-compare-header")
            compare_outputs = []
            with gr.Row(equal_height=False):
                for which in ("post", "hybrid", "pre"):
                    with gr.Column(visible=which != "pre") as column:
                        compare_outputs += [
                            gr.HTML(samples_html(which, MODEL_TITLES[which], None, "idle"), js_on_load=None),
                            gr.Markdown(elem_classes=["slr-stats"]),
                            gr.Plot(show_label=False, visible=False),
                        ]
                    if which == "pre":
                        pre_column = column
        with gr.Tab("Evaluate"):
            gr.Markdown(
                "Downstream check of the CRC choice (paper, Section 4): the post-trained model, SLR with the best "
                "interval, Proxy-Soup with the best α, SLR-Early/-Late controls of the same length and the pre-trained "
                "model. *Quick* runs a small subset, sized for a CPU. Needs the complete CRC landscape."
            )
            with gr.Row():
                task = gr.Radio(
                    [("open-ended QA", "qa"), ("creative writing", "writing")], value="qa", label="Task"
                )
                quick = gr.Checkbox(True, label="Quick")
                temperatures = gr.CheckboxGroup([0.7, 1.0, 1.5, 2.0], value=[1.0, 1.5], label="Temperatures")
                evaluation_seed = gr.Number(0, label="seed", precision=0)
                evaluate_button = gr.Button("Run evaluation", variant="primary")
            evaluation_table = gr.Dataframe(label="Results", wrap=True)
            evaluation_plot = gr.Plot(show_label=False)
            evaluation_text = gr.Markdown()

        view_outputs = [heat_quality, heat_diversity, references, tradeoff_plot, drift_plot]
        selection_outputs = [*view_outputs, start_box, end_box]
        sweep_outputs = [
            heat_quality,
            heat_diversity,
            tradeoff_plot,
            references,
            sweep_status,
            start_box,
            end_box,
            drift_plot,
        ]
        pair_outputs = [*view_outputs, start_box, end_box, pair_info, sweep_status, export_file, sweep_token]
        compare_inputs = [view, prompt, num_samples, min_p, temperature, max_new_tokens, seed, include_pre]
        compare_all = [compare_info, *compare_outputs]
        light = {"concurrency_id": "view", "concurrency_limit": 8, "show_progress": "hidden"}
        sampling = {"concurrency_id": "sample", "concurrency_limit": 2, "show_progress": "hidden"}

        sweep_token.change(
            run_sweep,
            [view],
            sweep_outputs,
            concurrency_id="sweep",
            concurrency_limit=1,
            show_progress="full",
            show_progress_on=[sweep_status],
        )
        loading = {"concurrency_id": "load", "concurrency_limit": 4, "show_progress_on": [pair_info]}
        demo.load(start_session, [view], pair_outputs, **loading)
        # No cancels= on the sweep: a successful load bumps view.generation, which stops the old
        # sweep at its next step, while a bad source must not stop the sweep of the pair still shown.
        load_button.click(show_pair, [view, pre_box, post_box], pair_outputs, **loading)
        preset.change(pick_preset, [preset], [pre_box, post_box], queue=False)

        compare_events = []
        for heatmap in (heat_quality, heat_diversity):
            picked = heatmap.select(select_cell, [view], selection_outputs, trigger_mode="multiple", **light)
            compare_events.append(picked.then(compare, compare_inputs, compare_all, **sampling))
        typed = compare_button.click(select_typed, [view, start_box, end_box], selection_outputs, **light)
        compare_events.append(typed.then(compare, compare_inputs, compare_all, **sampling))
        best = best_button.click(select_best, [view], selection_outputs, **light)
        compare_events.append(best.then(compare, compare_inputs, compare_all, **sampling))
        compare_events.append(sample_button.click(compare, compare_inputs, compare_all, **sampling))
        # A new choice stops the samples still streaming for the previous one.
        for trigger in (heat_quality.select, heat_diversity.select, compare_button.click, best_button.click):
            trigger(None, None, None, cancels=compare_events, queue=False)
        q_fraction.release(change_q_fraction, [view, q_fraction], selection_outputs, **light)
        include_pre.change(lambda shown: gr.update(visible=shown), [include_pre], [pre_column], queue=False)
        export_button.click(
            export_selected,
            [view, start_box, end_box],
            [export_file, export_note],
            concurrency_id="export",
            concurrency_limit=1,
        )
        evaluate_button.click(
            evaluate,
            [view, task, quick, temperatures, evaluation_seed],
            [evaluation_table, evaluation_plot, evaluation_text],
            concurrency_id="sweep",
            concurrency_limit=1,
        )
    return demo


def main(argv: list[str] | None = None) -> int:
    """Parse flags, load the default pair (so a bad source is reported at once), and serve."""
    global SETTINGS
    parser = argparse.ArgumentParser(description="SLR Explorer web app")
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")  # Spaces set these two
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    parser.add_argument(
        "--host", default=host, help=f"interface to listen on (default {host}; 0.0.0.0 for all)"
    )
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    parser.add_argument("--pre", help="pre-trained model: hub id[@rev], folder, .gguf or demo:pre")
    parser.add_argument("--post", help="post-trained model (same forms)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    if bool(args.pre) != bool(args.post):
        parser.error("give both --pre and --post, or neither")
    if args.pre:
        os.environ["SLR_PRE"], os.environ["SLR_POST"] = args.pre, args.post
    try:
        SETTINGS = Settings(device=args.device, dtype=args.dtype)
    except SLRError as error:
        parser.error(str(error))
    export_root().mkdir(parents=True, exist_ok=True)
    pre, post = default_sources()
    started = time.perf_counter()
    try:
        REGISTRY.get((pre, post, SETTINGS))
        print(f"loaded {pre} / {post} in {time.perf_counter() - started:.1f} s", flush=True)
    except SLRError as error:
        if args.pre:  # an explicit pair that cannot load is a usage error
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"warning: the default pair did not load ({error}); pick another in the page", file=sys.stderr)
    # Warm the sentence embedder now, so the first comparison does not wait for it.
    threading.Thread(target=embedding_dissimilarity, args=(["warm", "up"],), daemon=True).start()
    demo = build_app()
    demo.queue(default_concurrency_limit=2)
    css = (ASSETS / "app.css").read_text()
    theme = gr.themes.Soft(primary_hue="orange", neutral_hue="slate")
    demo.launch(
        server_name=args.host, server_port=args.port, allowed_paths=[str(export_root())], css=css, theme=theme
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
