"""Downstream diversity evaluation (paper section 4): SLR against its baselines on QA or writing.

Methods: the post-trained model, SLR with the CRC-selected interval, Proxy-Soup with the
CRC-selected alpha, the SLR-Early/SLR-Late controls of the same length, and the pre-trained model,
each at every requested temperature. Results are a JSON-able dict
    {method: {temperature as str: {metric: float}}, "meta": {...}}
with the pair's fingerprints, the intervals/alpha used, the settings and seed under "meta".
Each (method, temperature) result is cached as soon as it is computed.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass

from tqdm.auto import tqdm

from slr_core import cache, inputs
from slr_core.downstream import qa_data, writing_data
from slr_core.downstream.qa import QA_METRICS, evaluate_qa
from slr_core.downstream.sampling import SamplingSettings
from slr_core.downstream.writing import WRITING_METRICS, evaluate_writing
from slr_core.errors import InputError, SLRError
from slr_core.models.hosting import HostedPolicy
from slr_core.models.loading import ModelPair
from slr_core.models.settings import DEFAULT_Q_FRACTION
from slr_core.slr.hybrid import build_hybrid
from slr_core.slr.landscape import Landscape
from slr_core.slr.soup import soup_model

# The rules whose picks are evaluated, where the landscape supports them (the answer rule needs the
# answer_diversity column; a pick two rules share is sampled once, its results cached by interval).
EVALUATED_RULES = ("strict", "paper", "answer")

# The evaluation's code, hashed from its imports (cache.code_version): an edit to scoring, sampling or
# hybrid building gives its results a new key, with no version to bump by hand.
EVAL_ROOTS = ("slr_core.downstream.evaluation",)
TASKS = ("qa", "writing")
# Column names where the metric key is not already the name the paper uses; * marks a proxy.
LABELS = {"coverage": "coverage-n", "distinct_1": "distinct-1", "distinct_2": "distinct-2"}
LABELS.update(loglik="LL/tok*", repetition="repetitive*")
# Headline metrics per task; the text table adds "(std)" only for those in WITH_STD, to stay narrow.
TABLE_METRICS = {"qa": QA_METRICS, "writing": WRITING_METRICS}
WITH_STD = {"precision", "entropy", "coverage", "diversity", "loglik"}


class EvaluationError(SLRError):
    """An evaluation request that cannot run: unknown task, bad temperature, empty landscape."""


@dataclass(frozen=True)
class EvalSettings:
    """How much to sample: items (None = all), samples per item, tokens per sample, min-p."""

    num_items: int | None
    num_samples: int
    max_new_tokens: int
    min_p: float = 0.1


# Quick is sized for a 2-core CPU (a few minutes per task on the demo pair): QA answers are a few
# tokens, so 16 new tokens suffice; models that never stop (the base) still pay for all of them.
PRESETS = {
    ("qa", True): EvalSettings(qa_data.QUICK_COUNT, 12, 16),
    ("qa", False): EvalSettings(None, 32, 64),  # the paper: 40 questions x 128 samples, 64 tokens
    ("writing", True): EvalSettings(writing_data.QUICK_COUNT, 6, 48),
    ("writing", False): EvalSettings(None, 32, 512),  # the paper: 300 prompts x 32 samples, 4096 tokens
}


@dataclass(frozen=True)
class Method:
    """One model to evaluate: key, display label, and how to build it."""

    key: str
    label: str
    kind: str  # "post", "pre", "slr" or "soup"
    interval: tuple[int, int] | None = None
    alpha: float | None = None

    @property
    def spec(self) -> str:
        """What determines the model's weights; part of the cache key."""
        if self.kind == "slr":
            return f"slr/{self.interval[0]}-{self.interval[1]}"
        return f"soup/{self.alpha:.2f}" if self.kind == "soup" else self.kind

    def plain(self) -> dict:
        """The method as stored in results meta."""
        out = {name: value for name, value in asdict(self).items() if value is not None and name != "key"}
        return {**out, "interval": list(self.interval)} if self.interval else out


def select_methods(
    landscape: Landscape, fraction: float = DEFAULT_Q_FRACTION
) -> tuple[list[Method], dict[str, str]]:
    """The methods the landscape supports (SLR and soup under each rule), and why any were skipped."""
    if landscape.post is None:
        raise EvaluationError("The landscape has no post-trained reference: run the CRC sweep first.")
    methods, skipped = [Method("post", "Post-trained", "post")], {}
    rules = [rule for rule in EVALUATED_RULES if rule in landscape.usable_rules()]
    if "strict" not in rules:
        skipped["slr_strict"] = "the landscape has no strict-CRC numbers (re-sweep it)"
    picks = {rule: landscape.rule_summary(fraction, rule) for rule in rules}
    for rule, pick in picks.items():
        if pick["best"] is None:
            skipped[f"slr_{rule}"] = f"no interval reaches the {rule} rule's q_min = {pick['q_min']:.4f}"
            continue
        i, j = pick["best"]["interval"]
        methods.append(Method(f"slr_{rule}", f"SLR {rule} [{i}, {j}]", "slr", (i, j)))
    for rule, pick in picks.items():
        if "soup" in pick:
            alpha = pick["soup"]["alpha"]
            methods.append(
                Method(f"soup_{rule}", f"Proxy-Soup {rule} alpha={alpha:.2f}", "soup", alpha=alpha)
            )
        else:
            skipped[f"soup_{rule}"] = "no soup alpha reaches q_min" if landscape.soup else "no soup sweep"
    first = next((pick for pick in picks.values() if pick["best"] is not None), None)
    if first is not None:  # the controls of the default rule's pick (strict where it exists)
        for name, control in first["controls"].items():
            i, j = control["interval"]
            methods.append(Method(f"slr_{name}", f"SLR-{name.title()} [{i}, {j}]", "slr", (i, j)))
    methods.append(Method("pre", "Pre-trained", "pre"))
    return methods, skipped


def interval_methods(intervals) -> list[Method]:
    """The post-trained model, then SLR on each interval: what `evaluate --intervals` samples."""
    slr = [Method(f"slr_{i}_{j}", f"SLR [{i}, {j}]", "slr", (i, j)) for i, j in sorted(intervals)]
    return [Method("post", "Post-trained", "post"), *slr]


def _items(task: str, settings: EvalSettings) -> list:
    items = list(qa_data.QUESTIONS if task == "qa" else writing_data.PROMPTS)
    return items if settings.num_items is None else items[: settings.num_items]


def item_count(task: str, quick: bool) -> int:
    """How many questions or prompts a run of `task` samples."""
    return len(_items(task, PRESETS[(task, bool(quick))]))


def _check(temperatures, settings: EvalSettings, seed: int) -> list[SamplingSettings]:
    try:  # distinct (a repeat would rerun the same work), at most inputs.MAX_TEMPERATURES
        temperatures = inputs.temperatures(temperatures)
    except InputError as error:
        raise EvaluationError(str(error)) from error
    if settings.num_samples < 2 or (settings.num_items is not None and settings.num_items < 1):
        raise EvaluationError(f"Need at least one item and two samples per item, got {settings}.")
    try:
        return [
            SamplingSettings(settings.num_samples, settings.min_p, t, settings.max_new_tokens, seed)
            for t in temperatures
        ]
    except ValueError as error:
        raise EvaluationError(f"Bad sampling settings: {error}.") from error


def _digest(task: str) -> str:
    return qa_data.data_digest() if task == "qa" else writing_data.data_digest()


def _context(pair: ModelPair, task: str, settings: EvalSettings, seed: int) -> str:
    text = json.dumps(
        [cache.code_version(EVAL_ROOTS), pair.identity, task, asdict(settings), seed, _digest(task)]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _build(pair: ModelPair, method: Method):
    if method.kind == "slr":
        return build_hybrid(pair, *method.interval)
    if method.kind == "soup":
        return soup_model(pair, method.alpha)  # costs one model's memory until released
    return pair.pre if method.kind == "pre" else pair.post


def _score(pair, model, task, items, sampling: SamplingSettings, desc: str) -> dict:
    began = time.perf_counter()
    if task == "qa":
        metrics, examples = evaluate_qa(model, pair.post, pair.tokenizer, items, sampling, desc)
    else:
        metrics, examples = evaluate_writing(model, pair.post, pair.tokenizer, items, sampling, desc)
    return {"metrics": metrics, "examples": examples, "seconds": round(time.perf_counter() - began, 2)}


def _method_runs(
    pair, method: Method, task, items, samplings, context: str, use_cache: bool, turn: AbstractContextManager
) -> Iterator[tuple[str, dict]]:
    """(temperature, {"metrics", "examples", "seconds"}) of one method, one temperature at a time, each
    computed inside `turn`; the model is built only if needed, and a soup's copy released at the end."""
    model = None
    for sampling in samplings:
        key = cache.result_key(context, f"eval/{task}/{method.spec}/T{sampling.temperature}")
        stored = cache.get_json(key) if use_cache else None
        if stored is None:
            with turn:
                model = model if model is not None else _build(pair, method)
                stored = _score(pair, model, task, items, sampling, f"{method.key} T={sampling.temperature}")
            if use_cache:
                cache.put_json(key, stored)  # at once, so an interrupted run keeps what it computed
        yield str(sampling.temperature), stored


def evaluation_steps(
    pair: ModelPair,
    landscape: Landscape | None,
    task: str,
    quick: bool = True,
    temperatures=(1.0, 1.5),
    seed: int = 0,
    *,
    settings: EvalSettings | None = None,
    use_cache: bool = True,
    turn: AbstractContextManager | None = None,
    policy: HostedPolicy | None = None,
    methods: list[Method] | None = None,
) -> Iterator[dict]:
    """run_evaluation one method and temperature at a time, yielding the results so far after each.

    Each step holds `turn` (e.g. the app's device lock) only while it computes, so samplers get turns
    in between; closing the generator (a visitor left) stops the run before its next step. `policy`
    refuses what the server does not run (hosted mode: the quick evaluation only). Given `methods`
    (interval_methods), those are sampled instead of the landscape's picks, and no landscape is needed."""
    (policy or HostedPolicy()).check_evaluation(quick)
    if task not in TASKS:
        raise EvaluationError(f"Unknown task '{task}': use one of {', '.join(TASKS)}.")
    settings = settings or PRESETS[(task, bool(quick))]
    samplings = _check(temperatures, settings, seed)
    items = _items(task, settings)
    methods, skipped = (methods, {}) if methods is not None else select_methods(landscape)
    context, started = _context(pair, task, settings, seed), time.perf_counter()
    meta = {
        **_meta(pair, landscape, task, quick, settings, [s.temperature for s in samplings], seed, items),
        "methods": {m.key: m.plain() for m in methods},
        "skipped": skipped,
    }
    runs: dict[str, dict[str, dict]] = {}
    for method in tqdm(methods, desc=f"evaluate {task}"):
        steps = _method_runs(pair, method, task, items, samplings, context, use_cache, turn or nullcontext())
        for temperature, run in steps:
            runs.setdefault(method.key, {})[temperature] = run
            yield _results(runs, meta, started, len(methods) * len(samplings))


def _results(runs: dict[str, dict[str, dict]], meta: dict, started: float, total: int) -> dict:
    results = {key: {t: run["metrics"] for t, run in per_t.items()} for key, per_t in runs.items()}
    results["meta"] = {
        **meta,
        "seconds": {key: {t: run["seconds"] for t, run in per_t.items()} for key, per_t in runs.items()},
        "examples": {key: {t: run["examples"] for t, run in per_t.items()} for key, per_t in runs.items()},
        "steps": {"done": sum(len(per_t) for per_t in runs.values()), "total": total},
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    return results


def run_evaluation(
    pair: ModelPair,
    landscape: Landscape | None,
    task: str,
    quick: bool = True,
    temperatures=(1.0, 1.5),
    seed: int = 0,
    *,
    settings: EvalSettings | None = None,
    use_cache: bool = True,
    methods: list[Method] | None = None,
) -> dict:
    """Every method at every temperature on `task` ('qa' or 'writing'); see the module docstring."""
    results = None
    steps = evaluation_steps(
        pair,
        landscape,
        task,
        quick,
        temperatures,
        seed,
        settings=settings,
        use_cache=use_cache,
        methods=methods,
    )
    for results in steps:  # noqa: B007 (the last one is complete)
        pass
    return results


def _meta(pair, landscape, task, quick, settings, temperatures, seed, items) -> dict:
    return {
        "task": task,
        "pair": pair.label,
        "pre_fingerprint": pair.pre_fingerprint,
        "post_fingerprint": pair.post_fingerprint,
        "identity": pair.identity,
        "num_layers": pair.num_layers,
        "q_fraction": DEFAULT_Q_FRACTION,
        "q_min": {
            rule: landscape.q_min(DEFAULT_Q_FRACTION, rule)
            for rule in EVALUATED_RULES
            if landscape is not None and rule in landscape.usable_rules()
        },
        "quick": bool(quick),
        "settings": asdict(settings),
        "temperatures": temperatures,
        "seed": seed,
        "data_digest": _digest(task),
        "items": [item.id for item in items],
        "embedder": "all-MiniLM-L6-v2" if task == "writing" else None,
        "eval_code": cache.code_version(EVAL_ROOTS),
    }


# ---------------------------------------------------------------- presentation


def _methods(results: dict) -> list[str]:
    return [key for key in results if key != "meta"]


def _label(results: dict, key: str) -> str:
    return results.get("meta", {}).get("methods", {}).get(key, {}).get("label", key)


def _cell(metrics: dict, name: str) -> str:
    value, std = metrics.get(name, math.nan), metrics.get(f"{name}_std")
    return f"{value:.3f} ({std:.3f})" if std is not None and name in WITH_STD else f"{value:.3f}"


def format_table(results: dict) -> str:
    """A plain-text table: one row per method and temperature, mean (std over items) per metric."""
    meta = results["meta"]
    names = TABLE_METRICS[meta["task"]]
    header = ["method", "T", *(LABELS.get(n, n) for n in names)]
    rows = [  # a run still going has some methods and temperatures only
        [_label(results, key), t, *(_cell(results[key][str(t)], n) for n in names)]
        for t in meta["temperatures"]
        for key in _methods(results)
        if str(t) in results[key]
    ]
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join([_title(meta), *lines, *_notes(meta)])


def _title(meta: dict) -> str:
    task = "Open-ended QA" if meta["task"] == "qa" else "Creative writing"
    s = meta["settings"]
    return (
        f"{task}: {meta['pair']}\n{len(meta['items'])} items x {s['num_samples']} samples, "
        f"min-p {s['min_p']}, max {s['max_new_tokens']} new tokens, seed {meta['seed']}; mean (std over items)"
    )


def _notes(meta: dict) -> list[str]:
    notes = [f"skipped {key}: {why}" for key, why in meta.get("skipped", {}).items()]
    if meta["task"] == "qa":
        notes.append("entropy in nats over correct answers; coverage-n = share of reference answers produced")
    else:
        notes.append("* quality PROXIES, not judged quality: repetitive = share of looping samples")
    notes.append(
        "stopped = share of samples that ended their turn before the token cap; words = mean words per "
        "sample; LL/tok* = the post-trained model's mean log-likelihood per token of a sample (a proxy)"
    )
    return notes


def results_frame(results: dict) -> list[dict]:
    """One dict per method and temperature (method label, temperature, every metric), for a UI table."""
    rows = []
    for key in _methods(results):
        for temperature, metrics in results[key].items():
            row = {"method": _label(results, key), "temperature": float(temperature)}
            row.update({name: round(value, 4) for name, value in metrics.items()})
            rows.append(row)
    return rows


def figure_data(results: dict) -> dict[str, list[dict]]:
    """Per headline metric, long-form bars {method, temperature, value, std} for a grouped bar chart."""
    names = TABLE_METRICS[results["meta"]["task"]]
    return {
        name: [
            {
                "method": _label(results, key),
                "temperature": temperature,
                "value": metrics.get(name, math.nan),
                "std": metrics.get(f"{name}_std", math.nan),
            }
            for key in _methods(results)
            for temperature, metrics in results[key].items()
        ]
        for name in names
    }
