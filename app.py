"""SLR Explorer's web app: wiring only (app_layout.py places the components). Handlers read the page's
values, call slr_core, and return {component: value}. Run `python app.py --help`. Per-visitor state is a slr_core.serve.session.SessionView
in gr.State; loaded pairs are shared read-only through a registry, and each request builds its own hybrid.
"""

from __future__ import annotations

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

from app_layout import ASSETS, PLOTLY_JS, SCROLL_TO_COMPARE, lay_out, visitor_errors
from slr_core import cache, inputs
from slr_core.downstream import evaluation
from slr_core.downstream.metrics import embedding_dissimilarity
from slr_core.engine import cached_sweep
from slr_core.errors import SLRError
from slr_core.export.writer import prune_exports, publish_archive
from slr_core.models.hosting import DEFAULT_CONCURRENCY, HostedPolicy
from slr_core.models.presets import PRESETS
from slr_core.models.settings import Settings
from slr_core.report.evaluation_figure import evaluation_figure
from slr_core.report.evaluation_plan import progress_markdown
from slr_core.report.summary import sweep_status
from slr_core.serve import admission, pair_compare, prompt_choice, session
from slr_core.serve.compare import ComparePanel, checked_request, open_panel
from slr_core.serve.launch import DELETE_CACHE, MAX_UPLOAD, launch_settings, preload
from slr_core.serve.registry import FairLock, LoadedPair, PairRegistry
from slr_core.serve.session import SessionView
from slr_core.serve.workbench import Workbench

ZERO_GPU = "spaces" in sys.modules and bool(os.environ.get("SPACES_ZERO_GPU"))  # a Hugging Face ZeroGPU Space
UPDATE_SECONDS = 0.6  # the least time between a sweep's redraws (session.DRAW_SHARE sets more)
STREAM_SECONDS = 0.25  # ... and streaming samples update their column
STOPPED = "Stopped. The rows above are the steps that finished; their results stay in the cache."


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
POLICY = HostedPolicy.from_env()  # replaced by main() once the flags are read (docs/hosting.md)
REGISTRY = PairRegistry.from_policy(POLICY)


WORK = Workbench(REGISTRY, DEVICE_TURN, STREAM_SECONDS)
# On ZeroGPU each of these calls gets a GPU for at most `duration` seconds.
sweep_steps, stream_column = gpu(600)(WORK.sweep_steps), gpu(180)(WORK.stream_column)
lambda_points, evaluation_steps = gpu(300)(WORK.lambda_points), gpu(600)(WORK.evaluation_steps)


def require_pair(view: SessionView) -> LoadedPair:
    """The session's loaded pair; a gr.Error asking to load one (none yet, or it was unloaded since)."""
    if view.key is None:
        raise gr.Error("No model pair is loaded yet: pick one above and press Load.")
    try:
        return REGISTRY.get(view.key, load=False)  # a stale click never reloads an evicted pair
    except SLRError as error:
        raise gr.Error(str(error)) from error


def sweep_token(view: SessionView, complete: bool):
    """A new value for the sweep token (which starts a sweep) unless the shown landscape is complete."""
    return gr.skip() if complete else f"{view.generation}:{time.time()}"


class Page:
    """The page's components (set by build_page) and its handlers, which return {component: value}."""

    def view_update(self, view: SessionView) -> dict:
        """Everything drawn from the view (SessionView.drawing names the components it fills)."""
        drift = require_pair(view).drift if view.key is not None else None
        return {getattr(self, name): value for name, value in view.drawing(drift).items()}

    @visitor_errors
    def show_pair(self, view: SessionView, pre: str, post: str, progress=TRACKED_PROGRESS) -> dict:
        """Load (or reuse) a pair and show its cached landscape; an incomplete one starts a sweep."""
        key = (pre.strip(), post.strip(), SETTINGS)
        if not key[0] or not key[1]:
            raise gr.Error("Give both a pre-trained and a post-trained model source.")
        if key not in REGISTRY:
            progress(0.05, desc=f"Loading {key[0]} and {key[1]} (the first load of a pair takes a while)")
        try:
            entry = REGISTRY.get(key)
        except SLRError:
            raise
        except Exception as error:  # e.g. out of memory half-way: the pair on screen stays as it was
            raise gr.Error(
                f"Could not load {key[0]} / {key[1]} ({type(error).__name__}: {error}). "
                "The pair shown before is unchanged."
            ) from error
        complete = view.show_pair(key, session.stored_landscapes(entry.pair, entry.encoded_for(view.prompts)))
        return {
            **self.view_update(view),
            self.pair_info: session.pair_markdown(entry.pair),
            self.sweep_status: sweep_status(view.landscape, running=False),
            self.export_file: gr.update(value=None, visible=False),
            self.sweep_token: sweep_token(view, complete),
        }

    def start_session(self, view: SessionView, progress=TRACKED_PROGRESS) -> dict:
        """A new visitor: show the default pair."""
        return self.show_pair(view, *session.default_sources(), progress=progress)

    def change_mode(self, view: SessionView, mode: str) -> dict:
        """Show whole-layer, attention-only or MLP-only restoration; a mode not swept yet is swept now."""
        entry = require_pair(view)
        view.show_mode(mode, cached_sweep.stored_landscape(entry.pair, entry.encoded_for(view.prompts), mode))
        return {
            **self.view_update(view),
            self.sweep_status: sweep_status(view.landscape, running=False),
            self.sweep_token: sweep_token(view, cached_sweep.is_complete(view.landscape)),
        }

    @visitor_errors
    def change_prompts(self, view: SessionView, choice: str, upload: str | None) -> dict:
        """Show another prompt set's landscape (each set cached apart), checked before any work; an
        incomplete one starts its sweep. Upload picked but no file yet: nothing changes."""
        entry = require_pair(view)
        chosen = prompt_choice.chosen_prompts(choice, upload, POLICY.hosted)
        if chosen is None:
            return {}
        name, prompts = chosen
        complete = view.show_prompts(
            name, prompts, session.stored_landscapes(entry.pair, entry.encoded_for(prompts))
        )
        return {
            **self.view_update(view),
            self.sweep_status: sweep_status(view.landscape, running=False),
            self.sweep_token: sweep_token(view, complete),
        }

    @visitor_errors
    def slice_lambda(self, view: SessionView, layers: str) -> Iterator[dict]:
        """Put the chosen hybrid's lambda slice (lambda = 0 ... 1) on the trade-off plot, point by point."""
        require_pair(view)
        restoration, key = view.restoration(layers, 1.0), view.key
        for points in lambda_points(key, restoration, view.slice_reference(), view.prompts):
            if view.key != key:
                return  # another pair is shown: its plot must not get this pair's slice
            view.lambda_slice = (restoration.label, points)
            yield {self.tradeoff: view.tradeoff()}

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
            steps = sweep_steps(view.key, view.missing(), view.mode, view.prompts)
            for running in view.follow(steps, UPDATE_SECONDS):
                progress(view.progress(), desc="CRC landscape", unit="result")
                yield {**self.view_update(view), self.sweep_status: sweep_status(view.landscape, running)}
        except SLRError as error:
            raise gr.Error(f"The sweep stopped: {error} {cache.keeping().note()}") from error
        except Exception as error:
            kind = type(error).__name__
            raise gr.Error(
                f"The sweep stopped unexpectedly ({kind}: {error}). {cache.keeping().note()}"
            ) from error

    @visitor_errors
    def select_cell(self, view: SessionView, event: gr.SelectData) -> dict:
        """A heatmap cell was clicked: select that interval and redraw the markers."""
        require_pair(view)
        view.selected = view.interval(*event.index)
        return self.view_update(view)

    @visitor_errors
    def select_typed(self, view: SessionView, start, end, layers="") -> dict:
        """Select the typed interval (none typed but layers are: the layers box picks the hybrid)."""
        require_pair(view)
        if not (start in (None, "") and end in (None, "") and (layers or "").strip()):
            view.selected = view.interval(start, end)
        return self.view_update(view)

    def select_best(self, view: SessionView) -> dict:
        """Select the best interval under the shown rule at the current q_min."""
        require_pair(view)
        if view.best() is None:
            raise gr.Error("No swept interval reaches q_min yet: lower q_min or wait for the sweep.")
        view.selected = view.best()
        return self.view_update(view)

    @visitor_errors
    def change_view(self, view: SessionView, fraction: float, rule: str, quality_map: str) -> dict:
        """A new q_min fraction, selection rule or quality map: the best interval and its markers move."""
        view.q_fraction, view.rule, view.quality_map = inputs.q_fraction(fraction), rule, quality_map
        return self.view_update(view) if view.landscape is not None else {}

    @visitor_errors
    def compare(
        self, view, prompt, samples, min_p, temperature, tokens, seed, include_pre, layers="", lam=1.0
    ):
        """Sample the post-trained model, the chosen hybrid (and the pre-trained one), streaming.

        The hybrid is the selected interval, or the typed layers, in the shown restore mode at fraction `lam`.
        """
        entry, key = require_pair(view), view.key
        prompt, settings = checked_request(
            prompt, (samples, min_p, temperature, tokens, seed), POLICY.prompt_max_chars
        )
        restoration = view.restoration(layers or "", 1.0 if lam is None else lam)
        panel = open_panel(
            entry.pair, restoration, prompt, settings, include_pre, view.crc_point(restoration)
        )
        header = {self.compare_info: panel.header}
        yield {**header, **self.columns_update(panel, *panel.models)}
        stream = lambda which: stream_column(key, which, restoration, panel.prompt, panel.settings)  # noqa: E731
        try:
            for which in panel.fill(stream):
                if view.key != key:  # another pair was loaded: its page must not show this pair's samples
                    raise gr.Error(
                        f"Sampling stopped: another pair was loaded instead of {entry.pair.label}."
                    )
                yield {**header, **self.columns_update(panel, which)}
        except gr.Error:
            raise
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

    @visitor_errors
    def export_selected(self, view: SessionView, start, end, layers="", lam=1.0, progress=PROGRESS) -> dict:
        """Export the chosen hybrid (interval or typed layers, shown mode, fraction) as a zipped model folder."""
        entry = require_pair(view)
        restoration = view.chosen(start, end, layers, lam)
        landscape = view.pinned(entry.pair)
        progress(0.1, desc=f"Writing hybrid {restoration.label}")
        command = f"SLR Explorer app: export hybrid {restoration.label} of {entry.pair.label}"
        try:
            with REGISTRY.using(view.key):  # never evicted while it is written
                archive = publish_archive(
                    entry.pair, restoration, export_root(), landscape, view.q_fraction, command, POLICY
                )
        except (SLRError, OSError) as error:
            raise gr.Error(f"Export failed: {error}") from error
        note = f"Exported hybrid {restoration.label} to the server's export folder as `{archive.name}`."
        return {self.export_file: gr.update(value=str(archive), visible=True), self.export_note: note}

    @visitor_errors
    def compare_pairs(self, view: SessionView, choice: str) -> dict:
        """The shown landscape beside a shipped one: maps, Δ maps, both fronts and both picks."""
        entry = require_pair(view)
        label, second = pair_compare.second_landscape(choice)
        drawn = pair_compare.compare_with(
            view.landscape, entry.pair.label, second, label, view.q_fraction, view.shown_rule
        )
        maps = dict(zip(self.pair_maps, drawn["maps"], strict=True))
        return {
            **maps,
            self.pair_note: drawn["note"],
            self.pair_fronts: drawn["fronts"],
            self.pair_picks: drawn["picks"],
        }

    @visitor_errors
    def evaluate(self, view, task, quick, temperatures, seed, progress=TRACKED_PROGRESS) -> Iterator[dict]:
        """Run the downstream evaluation on the session's pair, redrawing table, bars and notes per step."""
        entry, key = require_pair(view), view.key
        POLICY.check_evaluation(bool(quick))
        temperatures, seed = session.evaluation_settings(temperatures, seed)
        landscape = view.evaluation_landscape(entry.pair)  # whole layers, this pair's
        began, shown = time.monotonic(), gr.update(visible=True)
        yield {self.evaluation_status: "Running the first step…", self.stop_evaluation: shown}
        for results in evaluation_steps(key, landscape, task, bool(quick), temperatures, seed):
            yield {
                self.evaluation_table: gr.update(
                    value=pandas.DataFrame(evaluation.results_frame(results)), visible=True
                ),
                self.evaluation_plot: gr.update(
                    value=evaluation_figure(evaluation.figure_data(results)), visible=True
                ),
                self.evaluation_text: f"```\n{evaluation.format_table(results)}\n```",
                self.evaluation_status: progress_markdown(results, time.monotonic() - began, True),
            }
        yield {
            self.evaluation_status: progress_markdown(results, time.monotonic() - began, False),
            self.stop_evaluation: gr.update(visible=False),
        }

    def plan_evaluation(self, view: SessionView, task: str, quick: bool, temperatures) -> str:
        """What a run of the evaluation will do and about how long it takes (before it starts)."""
        return session.evaluation_plan(view, REGISTRY, task, quick, temperatures)


def build_page() -> Page:
    """The whole page and its events; the Page holds every component and `demo`, the Blocks."""
    gr.set_static_paths([str(PLOTLY_JS), str(export_root())])
    page = Page()
    with gr.Blocks(title="SLR Explorer", delete_cache=DELETE_CACHE) as page.demo:
        lay_out(page)
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
    light = {**POLICY.concurrency("view"), "show_progress": "hidden"}
    sampling = {**POLICY.concurrency("sample"), "show_progress": "hidden"}
    loading = {**POLICY.concurrency("load"), "show_progress_on": [page.pair_info]}
    sweep_outputs = [*view_outputs, page.sweep_status]
    page.sweep_token.change(
        page.run_sweep, [page.view], sweep_outputs, **POLICY.concurrency("sweep"),
        show_progress="full", show_progress_on=[page.sweep_status],
    )  # fmt: skip
    starting = {**POLICY.concurrency("start"), "show_progress_on": [page.pair_info]}
    started = page.demo.load(page.start_session, [page.view], pair_outputs, **starting)
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
        # "multiple": under the default "once" the page drops a comparison asked for while one runs.
        compared = picked.then(
            page.compare, compare_inputs, compare_outputs, trigger_mode="multiple", **sampling
        )
        compare_events.append(compared)
    compare_events.append(page.sample_button.click(page.compare, compare_inputs, compare_outputs, **sampling))
    for trigger, *_ in selections:  # a new choice stops the samples still streaming for the previous one
        trigger(None, None, None, cancels=compare_events, queue=False, js=SCROLL_TO_COMPARE)
    view_inputs = [page.view, page.q_fraction, page.rule, page.quality_map]
    for trigger in (page.q_fraction.release, page.rule.change, page.quality_map.change):
        trigger(page.change_view, view_inputs, view_outputs, **light)
    page.include_pre.change(
        lambda shown: gr.update(visible=shown), [page.include_pre], [page.column_boxes["pre"]], queue=False
    )
    # A mode not swept yet changes the sweep token, which starts its sweep (and stops the last mode's).
    mode_outputs = [*view_outputs, page.sweep_status, page.sweep_token]
    page.restore.change(page.change_mode, [page.view, page.restore], mode_outputs, **light)
    choosing = {**POLICY.concurrency("load"), "show_progress": "hidden"}  # encoding a set takes seconds
    for trigger in (page.prompt_set.input, page.prompt_file.upload):  # a set is checked before any work
        trigger(page.change_prompts, [page.view, page.prompt_set, page.prompt_file], mode_outputs, **choosing)
    sliced = page.slice_button.click(page.slice_lambda, [page.view, page.layers], [page.tradeoff], **sampling)
    page.slice_stop.click(None, None, None, cancels=[sliced], queue=False)  # closing it stops the slice
    export = [page.export_file, page.export_note]
    page.export_button.click(
        page.export_selected,
        [page.view, page.start, page.end, page.layers, page.fraction],
        export,
        **POLICY.concurrency("export"),
    )
    comparison = [*page.pair_maps, page.pair_note, page.pair_fronts, page.pair_picks]
    page.pair_compare_button.click(page.compare_pairs, [page.view, page.second_pair], comparison, **light)
    evaluation = [page.evaluation_table, page.evaluation_plot, page.evaluation_text]
    evaluation += [page.evaluation_status, page.stop_evaluation]
    running = page.evaluate_button.click(
        page.evaluate, [page.view, *page.evaluation], evaluation, **POLICY.concurrency("evaluate"),
        show_progress_on=[page.evaluation_status],  # the rows that arrived stay readable
    )  # fmt: skip
    page.stop_evaluation.click(
        lambda: (STOPPED, gr.update(visible=False)), None, [page.evaluation_status, page.stop_evaluation],
        cancels=[running], queue=False,
    )  # fmt: skip
    plan = [page.view, *page.evaluation[:3]]
    for trigger in (started.then, *(field.change for field in page.evaluation[:3])):
        trigger(page.plan_evaluation, plan, [page.evaluation_plan], **light)


def build_app() -> gr.Blocks:
    """The page's Blocks."""
    return build_page().demo


def main(argv: list[str] | None = None) -> int:
    """Parse flags, load the pair (a named one first, so a bad source is reported at once), and serve."""
    global SETTINGS, POLICY
    args, SETTINGS, POLICY = launch_settings(argv)
    REGISTRY.follow(POLICY)
    export_root().mkdir(parents=True, exist_ok=True)
    prune_exports(export_root(), POLICY)  # expired exports of an earlier run go now, not at the first export
    print(cache.probe().note(), flush=True)
    if args.pre and not preload(REGISTRY, args.pre, args.post, SETTINGS, explicit=True):
        return 2  # a pair named on the command line that cannot load is a usage error, said at once
    # Warm the sentence embedder now, so the first comparison does not wait for it.
    threading.Thread(target=embedding_dissimilarity, args=(["warm", "up"],), daemon=True).start()
    demo = build_app()
    demo.queue(default_concurrency_limit=DEFAULT_CONCURRENCY, max_size=POLICY.queue_max_size)
    admission.install(demo._queue, admission.Limits(heavy_total=POLICY.queue_max_size))  # per visitor
    css = (ASSETS / "app.css").read_text()
    theme = gr.themes.Soft(primary_hue="orange", neutral_hue="slate")
    demo.launch(
        server_name=args.host, server_port=args.port, allowed_paths=[str(export_root())], css=css, theme=theme,
        max_file_size=MAX_UPLOAD, prevent_thread_lock=not args.pre,
    )  # fmt: skip
    if not args.pre:  # loaded once the page is up: a load holding the GIL can fail launch's URL check
        loading = (REGISTRY, *session.default_sources(), SETTINGS, False)
        threading.Thread(target=preload, args=loading, daemon=True).start()
        demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
