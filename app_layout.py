"""The page's components and where they sit (app.py wires them), and the one decorator every handler shares."""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from slr_core.errors import SLRError
from slr_core.models.settings import DEFAULT_Q_FRACTION
from slr_core.serve import prompt_choice, session
from slr_core.serve.compare import MODEL_TITLES, samples_html
from slr_core.serve.pair_compare import second_pair_choices
from slr_core.serve.session import SessionView
from slr_core.slr.landscape import DEFAULT_RULE

ASSETS = Path(__file__).resolve().parent / "assets"
PLOTLY_JS = Path(importlib.util.find_spec("plotly").origin).parent / "package_data" / "plotly.min.js"
EXAMPLE_PROMPTS = [
    "Generate a random integer in the range [0, 9]. Do not include anything else in your reply.",
    "Name a US state. Reply with the name only.",
    "Write a short poem (four lines) about the sea.",
    "Tell me a joke.",
]
RULE_CHOICES = [
    ("strict: valid answer, then the reply ends", "strict"),
    ("paper: first token", "paper"),
    ("answer: most diverse whole answers that end the reply", "answer"),
]
QUALITY_MAP_CHOICES = [("strict Q", "strict_quality"), ("Q (first token)", "quality")]
RESTORE_CHOICES = [("whole layers", "layer"), ("attention only", "attention"), ("MLP only", "mlp")]
# A chosen interval's comparison sits far below the maps: bring its header into view on the click.
SCROLL_TO_COMPARE = "() => document.getElementById('slr-compare-header')?.scrollIntoView({block: 'start'})"


def visitor_errors(handler: Callable) -> Callable:
    """Show slr_core's SLRError (a message saying what to do) as a gr.Error, for plain and generator handlers."""
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streamed(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except SLRError as error:
                raise gr.Error(str(error)) from error

        return streamed

    @functools.wraps(handler)
    def plain(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except SLRError as error:
            raise gr.Error(str(error)) from error

    return plain


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


def lay_out(page) -> None:
    """Create every component as an attribute of `page`, inside the caller's gr.Blocks."""
    default_pre, default_post = session.default_sources()
    page.view, page.sweep_token = gr.State(SessionView()), gr.State("")
    gr.HTML((ASSETS / "header.html").read_text(), js_on_load=None)
    with gr.Accordion("Model pair", open=False), gr.Row(equal_height=True):
        preset = session.preset_for(default_pre, default_post)
        page.preset = gr.Dropdown(session.preset_choices(), value=preset, label="Preset", scale=2)
        page.pre_box = gr.Textbox(default_pre, label="Pre-trained model (hub id, folder or .gguf)", scale=3)
        page.post_box = gr.Textbox(default_post, label="Post-trained model", scale=3)
        page.load_button = gr.Button("Load pair", variant="primary", scale=1)
    page.pair_info = gr.Markdown(session.loading_note(default_pre, default_post), elem_id="slr-pair-label")
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
                page.prompt_set = gr.Dropdown(
                    prompt_choice.choices(), value="paper", label="Prompt set", elem_id="slr-prompt-set"
                )
                with gr.Accordion("Your own prompt set (JSON)", open=False):
                    page.prompt_file = gr.File(
                        label='[{"instruction": "...", "valid": ["answer", ...]}, ...]',
                        file_types=[".json"],
                        type="filepath",
                        elem_id="slr-prompt-file",
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
                    with gr.Row():
                        page.slice_button = gr.Button("λ slice 0…1 on the trade-off plot", size="sm")
                        page.slice_stop = gr.Button("Stop the slice", size="sm", variant="stop")
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
                            samples_html(which, MODEL_TITLES[which], None, "idle"),
                            js_on_load=None,
                        ),
                        gr.Markdown(elem_classes=["slr-stats"]),
                        gr.Plot(show_label=False, visible=False),
                    )
    with gr.Tab("Compare pairs"):
        lay_out_pair_comparison(page)
    with gr.Tab("Evaluate"):
        gr.Markdown((ASSETS / "evaluate.md").read_text())
        with gr.Row():
            page.evaluation = [
                gr.Radio(
                    [("open-ended QA", "qa"), ("creative writing", "writing")], value="qa", label="Task"
                ),
                gr.Checkbox(True, label="Quick"),
                gr.CheckboxGroup([0.7, 1.0, 1.5, 2.0], value=[1.0, 1.5], label="Temperatures"),
                gr.Number(0, label="seed", precision=0),
            ]
            with gr.Column(min_width=160):
                page.evaluate_button = gr.Button("Run evaluation", variant="primary")
                page.stop_evaluation = gr.Button("Stop", variant="stop", visible=False)
        page.evaluation_plan = gr.Markdown(elem_id="slr-evaluation-plan")
        page.evaluation_status = gr.Markdown(elem_id="slr-evaluation-status")
        # Hidden until the first step's rows arrive: no empty table or plot frame before a run.
        page.evaluation_table = gr.Dataframe(
            label="Results", wrap=True, visible=False, elem_id="slr-evaluation-table"
        )
        page.evaluation_plot = gr.Plot(show_label=False, visible=False)
        page.evaluation_text = gr.Markdown()


def lay_out_pair_comparison(page) -> None:
    """Compare with another pair: per metric a row of the shown pair's map, the second's and their Δ."""
    gr.Markdown("### Compare with another pair")
    choices = second_pair_choices()
    with gr.Row(equal_height=True):
        page.second_pair = gr.Dropdown(
            choices,
            value=choices[0][1] if choices else None,
            label="Second pair (a shipped landscape)",
            scale=4,
        )
        page.pair_compare_button = gr.Button("Compare with this pair", variant="primary", scale=1)
    page.pair_note = gr.Markdown(elem_id="slr-pair-note")
    page.pair_maps = []
    for _ in range(3):  # D, strict Q, stop
        with gr.Row():
            page.pair_maps += [gr.Plot(show_label=False) for _ in range(3)]
    with gr.Row():
        page.pair_fronts = gr.Plot(show_label=False)
        page.pair_picks = gr.Markdown(elem_id="slr-pair-picks")
