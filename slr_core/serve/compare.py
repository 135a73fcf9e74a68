"""One side-by-side comparison: the post-trained model, a hybrid (and the pre-trained model) sampled on
one prompt, column by column, with what is needed to reproduce it. Nothing here imports a web UI."""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from torch import nn

from slr_core import inputs
from slr_core.crc.prompts import valid_answers
from slr_core.downstream.metrics import crc_answers
from slr_core.downstream.sampling import Replies, SamplingSettings, sample_statistics
from slr_core.errors import InputError
from slr_core.models.loading import ModelPair
from slr_core.report import figures
from slr_core.report.summary import stop_warning
from slr_core.slr.hybrid import Restoration, build_restored, interval_restoration, materialised_bytes
from slr_core.slr.landscape import Point

MODEL_TITLES = {"post": "Post-trained", "hybrid": "SLR hybrid", "pre": "Pre-trained"}
ENDED = "ended by themselves"  # replies that ended their turn before the token cap


@dataclass
class ComparePanel:
    """What the compare columns show while samples stream in."""

    restoration: Restoration
    settings: SamplingSettings
    include_pre: bool
    prompt: str
    header: str = ""
    texts: dict[str, list[str]] = field(default_factory=dict)
    replies: dict[str, Replies] = field(default_factory=dict)  # what each column's samples did, as they grow
    badges: dict[str, str] = field(default_factory=dict)
    statistics: dict[str, dict] = field(default_factory=dict)
    current: str | None = None

    @property
    def valid(self) -> tuple[str, ...] | None:
        """The prompt's valid CRC answers, if it is a CRC-style prompt."""
        return valid_answers(self.prompt)

    @property
    def models(self) -> list[str]:
        """The columns in order."""
        return ["post", "hybrid", "pre"] if self.include_pre else ["post", "hybrid"]

    def title(self, which: str) -> str:
        """A column's heading."""
        return f"SLR hybrid {self.restoration.label}" if which == "hybrid" else MODEL_TITLES[which]

    def fill(self, stream: Callable[[str], Iterator[Replies]]) -> Iterator[str]:
        """Sample each column in turn from `stream(which)`; yields the column that changed.

        While a column streams, `self.current` names it (for an error message).
        """
        for which in self.models:
            began, self.current, self.badges[which] = time.monotonic(), which, "sampling…"
            for replies in stream(which):
                self.texts[which], self.replies[which] = replies.texts, replies
                yield which
            ending = ending_statistics(self.replies.get(which))
            self.badges[which] = f"done in {time.monotonic() - began:.1f} s" + ending_badge(
                ending, self.settings.num_samples
            )
            self.statistics[which] = {**ending, **sample_statistics(self.texts.get(which, []))}
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


def checked_request(
    prompt: str | None, sampling: tuple, max_chars: int | None = None
) -> tuple[str, SamplingSettings]:
    """The stripped prompt (at most `max_chars`) and sampling settings, from (num_samples, min_p,
    temperature, max_new_tokens, seed) as typed; InputError says what to fix."""
    prompt = inputs.prompt(prompt, max_chars)
    try:
        return prompt, SamplingSettings.from_values(*sampling)
    except ValueError as error:
        raise InputError(f"Sampling settings: {error}") from error


def open_panel(
    pair: ModelPair,
    restoration: Restoration,
    prompt: str,
    settings: SamplingSettings,
    include_pre: bool,
    crc: Point | None = None,
) -> ComparePanel:
    """A comparison of `restoration` on a checked prompt, with the header that reproduces it; `crc`, the
    restoration's CRC numbers where the landscape has them, adds a warning when its stop rate is low."""
    restoration.check(pair.num_layers)
    header = compare_header(pair, settings, prompt, restoration, materialised_bytes(pair, restoration))
    warning = stop_warning(crc)
    header = f"{header}\n\n**{warning}**" if warning else header
    return ComparePanel(restoration, settings, bool(include_pre), prompt, header)


def sampled_model(pair: ModelPair, which: str, restoration: Restoration) -> nn.Module:
    """The model of one column: the pair's post or pre model, or this request's own hybrid."""
    return build_restored(pair, restoration) if which == "hybrid" else getattr(pair, which)


def compare_header(
    pair: ModelPair, settings: SamplingSettings, prompt: str, restoration: Restoration, new_bytes: int = 0
) -> str:
    """Everything needed to reproduce the samples shown."""
    interval = restoration.interval
    if interval is not None and restoration == interval_restoration(*interval):
        start, end = interval
        what = f"layers {start}–{end} restored from the pre-trained model"
        return f"**Interval [{start}, {end}]** ({what}) · " + _settings_text(pair, settings, prompt)
    part = {"layer": "layers", "attention": "attention of layers", "mlp": "MLP of layers"}
    what = f"{part[restoration.mode]} {restoration.span} from the pre-trained model"
    what += "" if restoration.fraction == 1 else f" at λ = {restoration.fraction:g}"
    what += "; every norm post-trained" if restoration.mode != "layer" else ""
    memory = f"{new_bytes / 2**20:.1f} MiB of blended weights" if new_bytes else "no new weights"
    label = html.escape(restoration.label)
    return f"**Hybrid {label}** ({what}; {memory}) · " + _settings_text(pair, settings, prompt)


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


def ending_statistics(replies: Replies | None) -> dict[str, float]:
    """How a column's replies ended, as the evaluation reports it: the share that ended by themselves
    (an end-of-turn token before the cap) and the mean length in tokens and words."""
    if replies is None or not replies.texts:
        return {}
    words = sum(len(text.split()) for text in replies.texts) / len(replies.texts)
    return {ENDED: sum(replies.ended), "mean length (tokens)": replies.mean_tokens, "mean words": words}


def ending_badge(ending: dict[str, float], num_samples: int) -> str:
    """How the replies ended, for the column's badge beside its samples ("" when none came)."""
    if not ending:
        return ""
    tokens = ending["mean length (tokens)"]
    return f" · {ending[ENDED]} / {num_samples} {ENDED} · mean {tokens:.1f} tokens"


def statistics_markdown(statistics: dict[str, float] | None, num_samples: int) -> str:
    """Sample statistics as a small table ("" while sampling)."""
    if statistics is None:
        return ""
    rows = ["| metric | value |", "|---|---|"]
    for name, value in statistics.items():
        counted = name in ("distinct answers", ENDED)
        shown = f"{value} / {num_samples}" if counted else f"{value:.3f}"
        shown = f"**{shown}**" if name == ENDED and value < num_samples / 2 else shown
        rows.append(f"| {name} | {shown} |")
    return "\n".join(rows)
