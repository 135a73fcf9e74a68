"""SLR Explorer's web app: layout and wiring only. Handlers read the page's values, call slr_core, and
return {component: value}. Run `python app.py --help`. Per-visitor state is a slr_core.session.SessionView
in gr.State; loaded pairs are shared read-only through a registry, and each request builds its own hybrid.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path

if os.environ.get("SPACES_ZERO_GPU") and importlib.util.find_spec("spaces") is not None:
    import spaces  # on a ZeroGPU Space, before torch initialises CUDA

import gradio as gr
import pandas

from slr_core import cached_sweep, figures, inputs, session
from slr_core.crc import valid_answers
from slr_core.errors import SLRError
from slr_core.export import export_name, export_restoration, zip_folder
from slr_core.hybrid import Restoration, build_restored, interval_restoration, materialised_bytes
from slr_core.landscape import DEFAULT_RULE, RESTORE_MODES, Landscape, Point
from slr_core.metrics import embedding_dissimilarity
from slr_core.presets import PRESETS
from slr_core.registry import FairLock, LoadedPair, PairKey, PairRegistry
from slr_core.sampling import SamplingSettings, stream_samples
from slr_core.session import ComparePanel, SessionView
from slr_core.settings import DEFAULT_Q_FRACTION, DEVICES, DTYPES, Settings
from slr_core.summary import sweep_status

ZERO_GPU = "spaces" in sys.modules and bool(os.environ.get("SPACES_ZERO_GPU"))  # a Hugging Face ZeroGPU Space
ASSETS = Path(__file__).resolve().parent / "assets"
PLOTLY_JS = Path(importlib.util.find_spec("plotly").origin).parent / "package_data" / "plotly.min.js"
UPDATE_SECONDS = 0.6  # at most this often a running sweep redraws the page
STREAM_SECONDS = 0.25  # ... and streaming samples update their column
EXAMPLE_PROMPTS = [
    "Generate a random integer in the range [0, 9]. Do not include anything else in your reply.",
    "Name a US state. Reply with the name only.",
    "Write a short poem (four lines) about the sea.",
    "Tell me a joke.",
]
RULE_CHOICES = [("strict: valid answer, then the reply ends", "strict"), ("paper: first token", "paper")]
QUALITY_MAP_CHOICES = [("strict Q", "strict_quality"), ("Q (first token)", "quality")]
RESTORE_CHOICES = [("whole layers", "layer"), ("attention only", "attention"), ("MLP only", "mlp")]
EVALUATE_NOTE = (
    "Downstream check of the CRC choice (paper, Section 4): the post-trained model, SLR with the best interval "
    "(under each selection rule), Proxy-Soup with the best α, SLR-Early/-Late controls of the same length and "
    "the pre-trained model. *Quick* runs a small subset, sized for a CPU. Needs the complete CRC landscape."
)


def gpu(duration: int) -> Callable:
    """spaces.GPU(duration=...) on ZeroGPU, so the call gets a GPU; a no-op decorator elsewhere."""
    return spaces.GPU(duration=duration) if ZERO_GPU else lambda function: function


def export_root() -> Path:
    """The operator's export folder: $SLR_EXPORT_DIR, default ./exports (never a visitor's path)."""
    return Path(os.environ.get("SLR_EXPORT_DIR", "exports")).expanduser().resolve()


SETTINGS = Settings()  # replaced by main() from --device/--dtype
# Gradio finds a handler's progress tracker by its default value (one shared instance, as a default would be).
PROGRESS = gr.Progress()
TRACKED_PROGRESS = gr.Progress(track_tqdm=True)
# Model compute in this process takes turns: sampling seeds torch's global RNG (so two samplers at once
# would not reproduce), and a sweep's capture pass hooks the shared layer modules (so a concurrent
# forward through them would corrupt it). ZeroGPU runs each call in its own worker process instead.
DEVICE_TURN = nullcontext() if ZERO_GPU else FairLock()
REGISTRY = PairRegistry(int(os.environ.get("SLR_MAX_PAIRS", "2")))


@gpu(duration=600)
def sweep_steps(key: PairKey, missing: set[tuple[int, int]], mode: str = "layer") -> Iterator[Landscape]:
    """Compute what the cache lacks (references, intervals, soup), yielding snapshots as results come."""
    entry = REGISTRY.get(key)
    steps = cached_sweep.survey(entry.pair, entry.encoded, intervals=missing, soup=True, mode=mode)
    yield from session.in_turns(steps, DEVICE_TURN)


@gpu(duration=180)
def stream_model(key: PairKey, which: str, hybrid, prompt: str, settings: SamplingSettings) -> Iterator:
    """Replies of the pair's post or pre model, or this request's own hybrid (an interval or a
    Restoration), as they grow."""
    pair = REGISTRY.get(key).pair
    if which == "hybrid":
        restoration = hybrid if isinstance(hybrid, Restoration) else interval_restoration(*hybrid)
        model = build_restored(pair, restoration)
    else:
        model = getattr(pair, which)
    yield from stream_samples(model, pair.tokenizer, prompt, settings, turn=DEVICE_TURN, every=STREAM_SECONDS)


@gpu(duration=300)
def lambda_points(key: PairKey, restoration: Restoration, post: Point | None) -> dict[float, Point]:
    """CRC of the restoration at lambda = 0, 0.1, ..., 1 (cached per point)."""
    from slr_core.modes import lambda_slice

    entry = REGISTRY.get(key)
    with DEVICE_TURN:
        return lambda_slice(entry.pair, entry.encoded, restoration, post)


@gpu(duration=600)
def evaluation_results(key: PairKey, landscape: Landscape, task, quick, temperatures, seed) -> dict:
    """slr_core.evaluation.run_evaluation on the session's pair and landscape."""
    from slr_core.evaluation import run_evaluation

    with DEVICE_TURN:
        return run_evaluation(REGISTRY.get(key).pair, landscape, task, quick, temperatures, seed)


def require_pair(view: SessionView) -> LoadedPair:
    """The session's loaded pair, or a gr.Error asking to load one."""
    if view.key is None:
        raise gr.Error("No model pair is loaded yet: pick one above and press Load.")
    return REGISTRY.get(view.key)


def require_interval(view: SessionView, start, end) -> tuple[int, int]:
    """The interval typed or clicked, checked against the pair's depth; a gr.Error saying what to do if bad."""
    require_pair(view)
    try:
        return view.interval(start, end)
    except (ValueError, SLRError) as error:
        raise gr.Error(str(error)) from error


class Page:
    """The page's components (set by build_page) and its handlers, which return {component: value}."""

    def view_update(self, view: SessionView) -> dict:
        """Everything drawn from the view: maps, scatter, references, summary, drift, interval boxes."""
        maps, suggested = view.heatmaps(), view.suggested()
        drift = REGISTRY.get(view.key).drift if view.key is not None else None
        return {
            self.heat_quality: maps["quality"],
            self.heat_diversity: maps["diversity"],
            self.heat_stop: maps["stop"],
            self.tradeoff: view.tradeoff(),
            self.references: view.references(),
            self.summary: view.summary(),
            self.modes_summary: view.modes_summary(),
            self.modes_plot: view.modes_figure(),
            self.drift: figures.drift_figure(drift, suggested) if drift is not None else None,
            self.start: suggested[0] if suggested else None,
            self.end: suggested[1] if suggested else None,
        }

    def show_pair(self, view: SessionView, pre: str, post: str, progress=TRACKED_PROGRESS) -> dict:
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
        except Exception as error:  # e.g. out of memory half-way: the pair on screen stays as it was
            raise gr.Error(
                f"Could not load {key[0]} / {key[1]} ({type(error).__name__}: {error}). "
                "The pair shown before is unchanged."
            ) from error
        stored = {
            mode: cached_sweep.stored_landscape(entry.pair, entry.encoded, mode) for mode in RESTORE_MODES
        }
        landscape, view.landscapes, view.lambda_slice = stored[view.mode], stored, None
        view.key, view.landscape, view.selected = key, landscape, None
        view.generation, complete = view.generation + 1, cached_sweep.is_complete(landscape)
        return {
            **self.view_update(view),
            self.pair_info: session.pair_markdown(entry.pair),
            self.sweep_status: sweep_status(landscape, running=False),
            self.export_file: gr.update(value=None, visible=False),
            self.sweep_token: gr.skip() if complete else f"{view.generation}:{time.time()}",
        }

    def start_session(self, view: SessionView, progress=TRACKED_PROGRESS) -> dict:
        """A new visitor: show the default pair."""
        return self.show_pair(view, *session.default_sources(), progress=progress)

    def change_mode(self, view: SessionView, mode: str) -> dict:
        """Show whole-layer, attention-only or MLP-only restoration; a mode not swept yet is swept now."""
        entry = require_pair(view)
        view.show_mode(mode, cached_sweep.stored_landscape(entry.pair, entry.encoded, mode))
        complete = cached_sweep.is_complete(view.landscape)
        return {
            **self.view_update(view),
            self.sweep_status: sweep_status(view.landscape, running=False),
            self.sweep_token: gr.skip() if complete else f"{view.generation}:{time.time()}",
        }

    def slice_lambda(self, view: SessionView, layers: str) -> dict:
        """Put the chosen hybrid's lambda slice (lambda = 0 ... 1) on the trade-off plot."""
        require_pair(view)
        try:
            restoration = view.restoration(layers, 1.0)
            points = lambda_points(view.key, restoration, view.landscape.post)
        except (ValueError, SLRError) as error:
            raise gr.Error(str(error)) from error
        view.lambda_slice = (restoration.label, points)
        return {self.tradeoff: view.tradeoff()}

    def pick_preset(self, name: str) -> dict:
        """Fill the source boxes from a preset (custom leaves them as typed)."""
        return {self.pre_box: PRESETS[name].pre, self.post_box: PRESETS[name].post} if name in PRESETS else {}

    def run_sweep(self, view: SessionView, progress=PROGRESS) -> Iterator[dict]:
        """Sweep what the cache lacks, redrawing maps, references, scatter and status as results come."""
        if view.key is None or view.landscape is None or cached_sweep.is_complete(view.landscape):
            return
        # One bar, set directly: under track_tqdm Gradio would count an outer bar into the sweep's inner one.
        progress(view.progress(), desc="CRC landscape", unit="result")
        try:
            for running in view.follow(sweep_steps(view.key, view.missing(), view.mode), UPDATE_SECONDS):
                progress(view.progress(), desc="CRC landscape", unit="result")
                yield {**self.view_update(view), self.sweep_status: sweep_status(view.landscape, running)}
        except SLRError as error:
            raise gr.Error(f"The sweep stopped: {error} Results so far are kept in the cache.") from error
        except Exception as error:
            kind = type(error).__name__
            raise gr.Error(
                f"The sweep stopped unexpectedly ({kind}: {error}). Results so far are kept."
            ) from error

    def select_cell(self, view: SessionView, event: gr.SelectData) -> dict:
        """A heatmap cell was clicked: select that interval and redraw the markers."""
        view.selected = require_interval(view, *event.index)
        return self.view_update(view)

    def select_typed(self, view: SessionView, start, end, layers="") -> dict:
        """Select the typed interval (none typed but layers are: the layers box picks the hybrid)."""
        if start in (None, "") and end in (None, "") and (layers or "").strip():
            return self.view_update(view)
        view.selected = require_interval(view, start, end)
        return self.view_update(view)

    def select_best(self, view: SessionView) -> dict:
        """Select the best interval under the shown rule at the current q_min."""
        require_pair(view)
        if view.best() is None:
            raise gr.Error("No swept interval reaches q_min yet: lower q_min or wait for the sweep.")
        view.selected = view.best()
        return self.view_update(view)

    def change_view(self, view: SessionView, fraction: float, rule: str, quality_map: str) -> dict:
        """A new q_min fraction, selection rule or quality map: the best interval and its markers move."""
        try:
            fraction = inputs.q_fraction(fraction)
        except SLRError as error:
            raise gr.Error(str(error)) from error
        view.q_fraction, view.rule, view.quality_map = fraction, rule, quality_map
        return self.view_update(view) if view.landscape is not None else {}

    def compare(
        self,
        view,
        prompt,
        num_samples,
        min_p,
        temperature,
        max_new_tokens,
        seed,
        include_pre,
        layers="",
        lam=1.0,
    ):
        """Sample the post-trained model, the chosen hybrid (and the pre-trained one), streaming.

        The hybrid is the selected interval, or the typed layers, in the shown restore mode at fraction `lam`.
        """
        entry = require_pair(view)
        if view.selected is None and not (layers or "").strip():
            raise gr.Error(
                "Click a heatmap cell (or type an interval or layers) to choose the hybrid to compare."
            )
        prompt = (prompt or "").strip()
        if not prompt:
            raise gr.Error("Write a prompt first (or pick an example).")
        try:
            settings = SamplingSettings.from_values(num_samples, min_p, temperature, max_new_tokens, seed)
        except ValueError as error:
            raise gr.Error(f"Sampling settings: {error}") from error
        try:
            restoration = view.restoration(layers or "", 1.0 if lam is None else lam)
        except (ValueError, SLRError) as error:
            raise gr.Error(str(error)) from error
        interval = restoration.interval or (restoration.layers[0], restoration.layers[-1])
        partial = None if restoration == interval_restoration(*interval) else restoration
        panel = ComparePanel(interval, settings, bool(include_pre), valid_answers(prompt), partial)
        new_bytes = materialised_bytes(entry.pair, restoration)
        text = session.compare_header(entry.pair, interval, settings, prompt, restoration, new_bytes)
        header = {self.compare_info: text}
        yield {**header, **self.columns_update(panel, *panel.models)}
        try:
            for which in panel.fill(
                lambda which: stream_model(view.key, which, restoration, prompt, settings)
            ):
                yield {**header, **self.columns_update(panel, which)}
        except Exception as error:  # e.g. out of memory; the other columns keep their samples
            failed = f"Sampling the {panel.title(panel.current)} failed"
            raise gr.Error(f"{failed}: {type(error).__name__}: {error}") from error

    def columns_update(self, panel: ComparePanel, *columns: str) -> dict:
        """Samples, statistics and histogram of the named columns of the panel."""
        update = {}
        for which in columns:
            samples, statistics, histogram = panel.column(which)
            html_box, stats_box, plot = self.columns[which]
            update[html_box], update[stats_box] = samples, statistics
            update[plot] = gr.update(value=histogram, visible=histogram is not None)
        return update

    def export_selected(self, view: SessionView, start, end, layers="", lam=1.0, progress=PROGRESS) -> dict:
        """Export the chosen hybrid (interval or typed layers, shown mode, fraction) as a zipped model folder."""
        entry = require_pair(view)
        try:
            if (layers or "").strip():
                restoration = view.restoration(layers, 1.0 if lam is None else lam)
            else:
                interval = require_interval(view, start, end)
                restoration = interval_restoration(*interval, view.mode, 1.0 if lam is None else float(lam))
                restoration.check(entry.pair.num_layers)
        except (ValueError, SLRError) as error:
            raise gr.Error(str(error)) from error
        interval = restoration.interval or (restoration.layers[0], restoration.layers[-1])
        progress(0.1, desc=f"Writing hybrid {restoration.label}")
        folder = export_root() / export_name(entry.pair, interval, restoration)
        command = f"SLR Explorer app: export hybrid {restoration.label} of {entry.pair.label}"
        try:
            landscape, fraction = view.landscape, view.q_fraction
            written = export_restoration(
                entry.pair, restoration, folder, landscape, True, command, q_fraction=fraction
            )
            archive = zip_folder(written)
        except (SLRError, OSError) as error:
            raise gr.Error(f"Export failed: {error}") from error
        note = f"Exported hybrid {restoration.label} to the server's export folder as `{archive.name}`."
        return {self.export_file: gr.update(value=str(archive), visible=True), self.export_note: note}

    def evaluate(self, view, task, quick, temperatures, seed, progress=TRACKED_PROGRESS) -> dict:
        """Run the downstream evaluation on the session's pair; table, Figure-3-style bars and notes."""
        from slr_core.evaluation import figure_data, format_table, results_frame

        require_pair(view)
        if not temperatures:
            raise gr.Error("Pick at least one temperature.")
        try:
            temperatures, seed = sorted(inputs.temperature(t) for t in temperatures), inputs.seed(seed)
        except SLRError as error:
            raise gr.Error(str(error)) from error
        landscape = view.all_modes().get("layer")  # the evaluation restores whole layers
        if landscape is None or not cached_sweep.is_complete(landscape):
            raise gr.Error(
                "The CRC landscape of this pair is not complete yet: wait for the sweep, then evaluate."
            )
        try:
            results = evaluation_results(view.key, landscape, task, bool(quick), temperatures, seed)
        except SLRError as error:
            raise gr.Error(str(error)) from error
        return {
            self.evaluation_table: pandas.DataFrame(results_frame(results)),
            self.evaluation_plot: figures.evaluation_figure(figure_data(results)),
            self.evaluation_text: f"```\n{format_table(results)}\n```",
        }


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


def build_page() -> Page:
    """The whole page and its events; the Page holds every component and `demo`, the Blocks."""
    gr.set_static_paths([str(PLOTLY_JS), str(export_root())])
    default_pre, default_post = session.default_sources()
    page = Page()
    with gr.Blocks(title="SLR Explorer") as page.demo:
        page.view, page.sweep_token = gr.State(SessionView()), gr.State("")
        gr.HTML((ASSETS / "header.html").read_text(), js_on_load=None)
        with gr.Accordion("Model pair", open=False), gr.Row(equal_height=True):
            preset = session.preset_for(default_pre, default_post)
            page.preset = gr.Dropdown(session.preset_choices(), value=preset, label="Preset", scale=2)
            page.pre_box = gr.Textbox(
                default_pre, label="Pre-trained model (hub id, folder or .gguf)", scale=3
            )
            page.post_box = gr.Textbox(default_post, label="Post-trained model", scale=3)
            page.load_button = gr.Button("Load pair", variant="primary", scale=1)
        page.pair_info = gr.Markdown("Loading the model pair…", elem_id="slr-pair-label")
        with gr.Tab("Explore"):
            with gr.Row():
                page.heat_quality = heatmap_component("heatmap-quality")
                page.heat_diversity = heatmap_component("heatmap-diversity")
                page.heat_stop = heatmap_component("heatmap-stop")
            with gr.Row():
                with gr.Column(min_width=300, scale=1):
                    page.restore = gr.Radio(
                        RESTORE_CHOICES, value="layer", label="Restore", elem_id="slr-restore"
                    )
                    page.rule = gr.Radio(
                        RULE_CHOICES, value=DEFAULT_RULE, label="Selection rule", elem_id="slr-rule"
                    )
                    page.quality_map = gr.Radio(
                        QUALITY_MAP_CHOICES,
                        value="strict_quality",
                        label="Quality map shows",
                        elem_id="slr-quality-map",
                    )
                    page.q_fraction = gr.Slider(
                        0.5, 1.0, DEFAULT_Q_FRACTION, step=0.01, label="q_min / quality of post"
                    )
                    with gr.Row():
                        page.start = gr.Number(None, label="start i", precision=0, minimum=0)
                        page.end = gr.Number(None, label="end j", precision=0, minimum=0)
                    with gr.Accordion("Any layers, or a fraction λ", open=False):
                        page.layers = gr.Textbox("", label="layers (e.g. 3,5,9-11; empty: the interval)")
                        page.fraction = gr.Slider(0.05, 1.0, 1.0, step=0.05, label="λ: (1-λ)·post + λ·pre")
                        page.slice_button = gr.Button("λ slice 0…1 on the trade-off plot", size="sm")
                    with gr.Row():
                        page.best_button = gr.Button("Select best ★", size="sm")
                        page.compare_button = gr.Button("Compare", variant="primary", size="sm")
                    page.export_button = gr.Button("Export this hybrid (zip)", size="sm")
                    page.export_file = gr.File(label="Exported hybrid", visible=False)
                    page.export_note = gr.Markdown()
                with gr.Column(scale=3):
                    page.references = gr.Markdown(elem_id="slr-references")
                    page.summary = gr.Markdown(elem_id="slr-summary")
            page.sweep_status = gr.Markdown(elem_id="slr-sweep-status")
            with gr.Row():
                page.tradeoff, page.drift = gr.Plot(show_label=False), gr.Plot(show_label=False)
            with gr.Row():
                page.modes_summary = gr.Markdown(elem_id="slr-modes-summary")
                page.modes_plot = gr.Plot(show_label=False)
            gr.Markdown("### Compare samples")
            with gr.Row():
                page.prompt = gr.Textbox(EXAMPLE_PROMPTS[0], label="Prompt", lines=2, scale=4)
                with gr.Column(scale=1, min_width=220):
                    page.include_pre = gr.Checkbox(False, label="Also sample the pre-trained model")
                    page.sample_button = gr.Button("Sample again", variant="secondary")
            gr.Examples([[text] for text in EXAMPLE_PROMPTS], inputs=[page.prompt], label="Example prompts")
            with gr.Accordion("Sampling settings", open=False), gr.Row():
                page.sampling = [
                    gr.Slider(1, 32, 8, step=1, label="samples per model"),
                    gr.Slider(0.0, 0.5, 0.1, step=0.01, label="min-p"),
                    gr.Slider(0.1, 2.0, 1.0, step=0.05, label="temperature"),
                    gr.Slider(8, 256, 48, step=8, label="max new tokens"),
                    gr.Number(0, label="seed", precision=0),
                ]
            page.compare_info = gr.Markdown(elem_id="slr-compare-header")
            page.columns, page.column_boxes = {}, {}
            with gr.Row(equal_height=False):
                for which in ("post", "hybrid", "pre"):
                    with gr.Column(visible=which != "pre") as page.column_boxes[which]:
                        page.columns[which] = (
                            gr.HTML(
                                session.samples_html(which, session.MODEL_TITLES[which], None, "idle"),
                                js_on_load=None,
                            ),
                            gr.Markdown(elem_classes=["slr-stats"]),
                            gr.Plot(show_label=False, visible=False),
                        )
        with gr.Tab("Evaluate"):
            gr.Markdown(EVALUATE_NOTE)
            with gr.Row():
                page.evaluation = [
                    gr.Radio(
                        [("open-ended QA", "qa"), ("creative writing", "writing")], value="qa", label="Task"
                    ),
                    gr.Checkbox(True, label="Quick"),
                    gr.CheckboxGroup([0.7, 1.0, 1.5, 2.0], value=[1.0, 1.5], label="Temperatures"),
                    gr.Number(0, label="seed", precision=0),
                ]
                page.evaluate_button = gr.Button("Run evaluation", variant="primary")
            page.evaluation_table = gr.Dataframe(label="Results", wrap=True)
            page.evaluation_plot = gr.Plot(show_label=False)
            page.evaluation_text = gr.Markdown()
        wire(page)
    return page


def wire(page: Page) -> None:
    """The page's events."""
    heatmaps = [page.heat_quality, page.heat_diversity, page.heat_stop]
    view_outputs = [*heatmaps, page.tradeoff, page.references, page.summary, page.drift, page.start, page.end]
    view_outputs += [page.modes_summary, page.modes_plot]
    pair_outputs = [*view_outputs, page.pair_info, page.sweep_status, page.export_file, page.sweep_token]
    compare_inputs = [page.view, page.prompt, *page.sampling, page.include_pre, page.layers, page.fraction]
    compare_outputs = [page.compare_info, *(box for boxes in page.columns.values() for box in boxes)]
    light = {"concurrency_id": "view", "concurrency_limit": 8, "show_progress": "hidden"}
    sampling = {"concurrency_id": "sample", "concurrency_limit": 2, "show_progress": "hidden"}
    loading = {"concurrency_id": "load", "concurrency_limit": 4, "show_progress_on": [page.pair_info]}
    sweep_outputs = [*view_outputs, page.sweep_status]
    page.sweep_token.change(
        page.run_sweep, [page.view], sweep_outputs, concurrency_id="sweep", concurrency_limit=1,
        show_progress="full", show_progress_on=[page.sweep_status],
    )  # fmt: skip
    page.demo.load(page.start_session, [page.view], pair_outputs, **loading)
    # No cancels= on the sweep: a successful load bumps view.generation, which stops the old sweep at
    # its next step, while a bad source must not stop the sweep of the pair still shown.
    page.load_button.click(page.show_pair, [page.view, page.pre_box, page.post_box], pair_outputs, **loading)
    page.preset.change(page.pick_preset, [page.preset], [page.pre_box, page.post_box], queue=False)
    selections = [(heatmap.select, page.select_cell, [], "multiple") for heatmap in heatmaps]
    selections += [
        (page.compare_button.click, page.select_typed, [page.start, page.end, page.layers], "once")
    ]
    selections += [(page.best_button.click, page.select_best, [], "once")]
    compare_events = []
    for trigger, handler, fields, mode in selections:
        picked = trigger(handler, [page.view, *fields], view_outputs, trigger_mode=mode, **light)
        compare_events.append(picked.then(page.compare, compare_inputs, compare_outputs, **sampling))
    compare_events.append(page.sample_button.click(page.compare, compare_inputs, compare_outputs, **sampling))
    for trigger, *_ in selections:  # a new choice stops the samples still streaming for the previous one
        trigger(None, None, None, cancels=compare_events, queue=False)
    view_inputs = [page.view, page.q_fraction, page.rule, page.quality_map]
    for trigger in (page.q_fraction.release, page.rule.change, page.quality_map.change):
        trigger(page.change_view, view_inputs, view_outputs, **light)
    page.include_pre.change(
        lambda shown: gr.update(visible=shown), [page.include_pre], [page.column_boxes["pre"]], queue=False
    )
    # A mode not swept yet changes the sweep token, which starts its sweep (and stops the last mode's).
    mode_outputs = [*view_outputs, page.sweep_status, page.sweep_token]
    page.restore.change(page.change_mode, [page.view, page.restore], mode_outputs, **light)
    page.slice_button.click(page.slice_lambda, [page.view, page.layers], [page.tradeoff], **sampling)
    export = [page.export_file, page.export_note]
    page.export_button.click(
        page.export_selected,
        [page.view, page.start, page.end, page.layers, page.fraction],
        export,
        concurrency_id="export",
        concurrency_limit=1,
    )
    evaluation = [page.evaluation_table, page.evaluation_plot, page.evaluation_text]
    page.evaluate_button.click(
        page.evaluate, [page.view, *page.evaluation], evaluation, concurrency_id="sweep", concurrency_limit=1
    )


def build_app() -> gr.Blocks:
    """The page's Blocks."""
    return build_page().demo


def main(argv: list[str] | None = None) -> int:
    """Parse flags, load the default pair (so a bad source is reported at once), and serve."""
    global SETTINGS
    parser = argparse.ArgumentParser(description="SLR Explorer web app")
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")  # Spaces set these two
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    parser.add_argument(
        "--host", default=host, help=f"interface to listen on (default {host}; 0.0.0.0 for all)"
    )
    port_number = inputs.flag(inputs.whole_number, low=1, high=65535)
    parser.add_argument("--port", type=port_number, default=port, help=f"port (default {port})")
    parser.add_argument("--pre", help="pre-trained model: hub id[@rev], folder, .gguf or demo:pre")
    parser.add_argument("--post", help="post-trained model (same forms)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--dtype", default="auto", choices=DTYPES)
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
    pre, post = session.default_sources()
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
