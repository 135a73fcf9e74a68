"""A cached, resumable run of a whole landscape; sweep.py is the exact shared-work engine it drives."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import torch

from . import cache
from .capture import Reference
from .chat import end_of_turn_ids
from .crc import EncodedPrompts, crc_means
from .hybrid import check_mode
from .landscape import METRICS, Landscape, Point
from .models import ModelPair
from .soup import ALPHAS, blend_into
from .sweep import Stats, make_batch, model_scores, sweep_intervals


def context_id(pair: ModelPair, encoded: EncodedPrompts, mode: str = "layer") -> str:
    """Cache context: the pair's identity (fingerprints, dtype, device type), prompts, end tokens and
    restore mode (whole layers keep the context they always had, so old caches and assets still match)."""
    text = f"{pair.identity}|{encoded.digest}|end={end_of_turn_ids(pair.tokenizer)}"
    text += "" if check_mode(mode) == "layer" else f"|restore={mode}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _contexts(pair: ModelPair, encoded: EncodedPrompts, mode: str) -> Callable[[str], str]:
    # Post, pre and soup results do not depend on the mode: every mode shares the whole-layer ones.
    shared, own = context_id(pair, encoded), context_id(pair, encoded, mode)
    return lambda name: own if name.startswith("interval/") else shared


def all_intervals(num_layers: int) -> set[tuple[int, int]]:
    """Every [i, j] with 0 <= i <= j <= N-1."""
    return {(i, j) for i in range(num_layers) for j in range(i, num_layers)}


# ---------------------------------------------------------------- result names (cache and CSV)


def interval_name(start: int, end: int) -> str:
    """The cache name of interval [start, end]'s result."""
    return f"interval/{start}-{end}"


def soup_name(alpha: float) -> str:
    """The cache name of the Proxy-Soup result at `alpha`."""
    return f"soup/{alpha:.2f}"


def result_names(num_layers: int) -> list[str]:
    """Every result of a full landscape: post, pre, each interval, each soup alpha."""
    names = ["post", "pre"] + [interval_name(i, j) for i, j in sorted(all_intervals(num_layers))]
    return names + [soup_name(alpha) for alpha in ALPHAS]


def result_count(landscape: Landscape) -> int:
    """How many of those results `landscape` holds."""
    references = (landscape.post is not None) + (landscape.pre is not None)
    return references + len(landscape.intervals) + len(landscape.soup)


def is_complete(landscape: Landscape) -> bool:
    """Every result of the full landscape (soup included) is there."""
    return result_count(landscape) == len(result_names(landscape.num_layers))


def _place(landscape: Landscape, name: str, point: Point) -> None:
    kind, _, rest = name.partition("/")
    if kind in ("post", "pre"):
        setattr(landscape, kind, point)
    elif kind == "interval":
        start, end = rest.split("-")
        landscape.intervals[(int(start), int(end))] = point
    else:
        landscape.soup[float(rest)] = point


def stored_landscape(pair: ModelPair, encoded: EncodedPrompts, mode: str = "layer") -> Landscape:
    """Whatever of the pair's landscape is in the cache or shipped in assets/, computing nothing."""
    context = _contexts(pair, encoded, mode)
    landscape = Landscape(pair.num_layers, meta=_meta(pair, encoded, context("interval/"), mode))
    names = result_names(pair.num_layers)
    stored = cache.get_results([cache.result_key(context(name), name) for name in names])  # one read
    shipped = _shipped(context)
    for name in names:
        value = stored[cache.result_key(context(name), name)]
        point = _stored_point(value) if value else shipped.get(name)
        if point is not None:
            _place(landscape, name, point)
    return landscape


def survey(
    pair: ModelPair,
    encoded: EncodedPrompts,
    intervals: set[tuple[int, int]] | None = None,
    soup: bool = False,
    use_cache: bool = True,
    batch_tokens: int = 16384,
    stats: Stats | None = None,
    mode: str = "layer",
) -> Iterator[Landscape]:
    """Yield the landscape after each new result; cached results are read, new ones stored at once.

    `mode` restores whole layers, attention only or MLP only (hybrid.RESTORE_MODES)."""
    wanted = intervals if intervals is not None else all_intervals(pair.num_layers)
    context = _contexts(pair, encoded, mode)
    landscape = Landscape(pair.num_layers, meta=_meta(pair, encoded, context("interval/"), mode))

    shipped = _shipped(context) if use_cache else {}

    def lookup(name):
        value = cache.get_result(cache.result_key(context(name), name)) if use_cache else None
        if value is None and name in shipped:  # a landscape shipped in assets/, same context
            return store(name, shipped[name])
        return _stored_point(value) if value else None

    def store(name, point):
        if use_cache:
            cache.put_result(cache.result_key(context(name), name), asdict(point))
        return point

    batch, end_ids = (
        make_batch(encoded, pair.tokenizer.pad_token_id, pair.device),
        end_of_turn_ids(pair.tokenizer),
    )
    reference = Reference(pair.post, batch)  # pre and soups replay the post model's layer calls
    for name, model in (("post", pair.post), ("pre", pair.pre)):
        point = lookup(name)
        if point is None:
            point = store(name, _point(model_scores(model, encoded, batch, end_ids, stats, reference)))
        setattr(landscape, name, point)
        yield landscape
    missing = set()
    for start, end in sorted(wanted):
        point = lookup(interval_name(start, end))
        if point is None:
            missing.add((start, end))
        else:
            landscape.intervals[(start, end)] = point
    if landscape.intervals:
        yield landscape
    if missing:
        for result in sweep_intervals(pair, encoded, missing, batch_tokens, stats, mode, reference):
            point = store(interval_name(result.start, result.end), _point(result.per_prompt))
            landscape.intervals[(result.start, result.end)] = point
            yield landscape
    if soup:
        yield from _soup(pair, encoded, (batch, end_ids, reference), landscape, lookup, store, stats)


def _soup(pair, encoded, scoring, landscape, lookup, store, stats):
    scratch = None
    for alpha in ALPHAS:
        point = lookup(soup_name(alpha))
        if point is None:
            scratch = scratch or copy.deepcopy(pair.post)
            blend_into(scratch, pair, alpha)
            batch, end_ids, reference = scoring
            scores = model_scores(scratch, encoded, batch, end_ids, stats, reference)
            point = store(soup_name(alpha), _point(scores))
        landscape.soup[alpha] = point
        yield landscape


SHIPPED_DIR = Path(__file__).resolve().parent.parent / "assets" / "landscapes"


def shipped_points(context: str, folder: Path | None = None) -> dict[str, Point]:
    """Results of a landscape CSV shipped with the repo whose provenance matches `context`."""
    for meta_path in sorted((folder or SHIPPED_DIR).glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        if meta.get("cache_context") != context or meta.get("schema") != cache.SCHEMA_VERSION:
            continue
        rows = csv.DictReader(meta_path.with_name(meta_path.name.replace(".meta.json", ".csv")).open())
        return {_row_name(row): Point(*(float(row[metric]) for metric in METRICS)) for row in rows}
    return {}


def _shipped(context: Callable[[str], str]) -> dict[str, Point]:
    # Each result only from a shipped landscape of its own context (never another mode's intervals).
    found = {}
    for shared_or_own in dict.fromkeys((context("post"), context("interval/"))):
        points = shipped_points(shared_or_own)
        found.update({name: point for name, point in points.items() if context(name) == shared_or_own})
    return found


def _row_name(row: dict) -> str:
    if row["kind"] == "interval":
        return interval_name(int(row["start"]), int(row["end"]))
    if row["kind"] == "soup":
        return soup_name(float(row["alpha"]))
    return row["kind"]


def _point(per_prompt: torch.Tensor) -> Point:
    return Point(*crc_means(per_prompt))


def _stored_point(value: dict) -> Point:
    return Point(*(value[metric] for metric in METRICS))


def _meta(pair: ModelPair, encoded: EncodedPrompts, context: str, mode: str = "layer") -> dict:
    return {
        **pair.provenance(),
        "prompt_set": encoded.digest,
        "num_prompts": len(encoded),
        "restore": mode,
        "cache_context": context,
        "schema": cache.SCHEMA_VERSION,
    }


def complete(iterator: Iterator[Landscape]) -> Landscape:
    """Drain a survey and return the final landscape."""
    landscape = None
    for landscape in iterator:  # noqa: B007 (we want the last one)
        pass
    return landscape
