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

from slr_core import cache
from slr_core.crc.prompts import EncodedPrompts, crc_means
from slr_core.engine.capture import Reference
from slr_core.engine.layouts import checked_scores, widened_once
from slr_core.engine.sweep import Stats, make_batch, sweep_intervals
from slr_core.models.chat import end_of_turn_ids
from slr_core.models.loading import ModelPair
from slr_core.slr.intervals import check_mode
from slr_core.slr.landscape import METRICS, Landscape, Point
from slr_core.slr.soup import ALPHAS, blend_into


def context_id(pair: ModelPair, encoded: EncodedPrompts, mode: str = "layer") -> str:
    """Cache context: the pair's identity (fingerprints, dtype, device type, attention), the prompts
    as fed, their valid token ids, the end tokens and the restore mode. Shipped landscapes match on it;
    cache.result_key adds torch, transformers and the engine's code hash for the cache itself."""
    # The prompt digest covers the input ids and answer characters, not which tokens spell each answer.
    valid = [[ids.tolist(), slots.tolist()] for ids, slots in zip(encoded.token_ids, encoded.char_index)]
    if not encoded.is_flat:  # answers of several tokens: the trie's shape and what it leaves out
        valid += [[t.parent, t.root_omitted, sorted(t.omitted.items())] for t in encoded.tries]
    text = f"{pair.identity}|{encoded.digest}|valid={json.dumps(valid)}|end={end_of_turn_ids(pair.tokenizer)}"
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
    """How many of those results `landscape` holds on the full prompt set (coarse ones do not count)."""
    references = sum(
        getattr(landscape, name) is not None and name not in landscape.coarse for name in ("post", "pre")
    )
    return references + len(landscape.intervals.keys() - landscape.coarse) + len(landscape.soup)


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
    references: bool = True,
    strict: bool = True,
) -> Iterator[Landscape]:
    """Yield the landscape after each new result; cached results are read, new ones stored at once.

    `mode` restores whole layers, attention only or MLP only (hybrid.RESTORE_MODES). Without
    `references` the post and pre models are not scored (a shard other than the first). Without
    `strict` the intervals get Q and D only (first_look's coarse pass); the references keep all four."""
    wanted = intervals if intervals is not None else all_intervals(pair.num_layers)
    context = _contexts(pair, encoded, mode)
    landscape = Landscape(pair.num_layers, meta=_meta(pair, encoded, context("interval/"), mode))

    shipped = _shipped(context) if use_cache else {}

    def lookup_many(names: list[str]) -> dict[str, Point | None]:
        keys = [cache.result_key(context(name), name) for name in names]
        values = cache.get_results(keys) if use_cache else {}  # one handle: ~25 ms each saved
        return {name: read(name, values.get(key)) for name, key in zip(names, keys)}

    def read(name, value):
        if value is None and name in shipped:  # a landscape shipped in assets/, same context
            return store(name, shipped[name])
        return _stored_point(value) if value else None

    def lookup(name):
        return lookup_many([name])[name]

    def store(name, point):
        if use_cache:
            cache.put_result(cache.result_key(context(name), name), asdict(point))
        return point

    layout = _Layout(pair, encoded, use_cache)  # made on first need: a fully cached landscape costs no pass
    for name, model in (("post", pair.post), ("pre", pair.pre)) if references else ():
        point = lookup(name)
        if point is None:
            encoded_laid_out, batch, _ = layout.scoring()
            scores = checked_scores(pair, model, encoded_laid_out, batch, stats, layout.reference)
            point = store(name, _point(scores))
        setattr(landscape, name, point)
        yield landscape
    if strict:
        run = (batch_tokens, stats, mode, layout)
        yield from _strict_intervals(pair, encoded, wanted, landscape, (lookup_many, store), run)
    else:
        run = (batch_tokens, stats, mode)
        yield from _first_token_intervals(pair, encoded, wanted, landscape, use_cache, run)
    if soup:
        yield from _soup(pair, layout, landscape, lookup, store, stats)


class _Layout:
    """The batch, end ids and post-model reference a survey scores with, made on first need.

    Tries over the cap are widened first (layouts.widen_layout: passes of the post and pre models), so
    a landscape whose results are all stored costs none of that."""

    def __init__(self, pair: ModelPair, encoded: EncodedPrompts, use_cache: bool = True) -> None:
        self.pair, self.encoded, self.reference, self._scoring = pair, encoded, None, None
        self.use_cache = use_cache

    def scoring(self) -> tuple:
        """(encoded, batch, end ids), the layout widened (or read from the cache) and the reference
        made on the first call."""
        if self._scoring is None:
            pair = self.pair
            # Not keyed by the engine's code: any widening is exact (each result measures what its
            # layout leaves out), so a later engine may start from one an earlier engine made.
            key = f"v{cache.SCHEMA_VERSION}/widened-layout/{context_id(pair, self.encoded)}"
            self.encoded = widened_once(pair, self.encoded, key if self.use_cache else None)
            batch = make_batch(self.encoded, pair.tokenizer.pad_token_id, pair.device)
            self.reference = Reference(pair.post, batch)  # pre and soups replay the post model's calls
            self._scoring = (self.encoded, batch, end_of_turn_ids(pair.tokenizer))
        return self._scoring


def _strict_intervals(pair, encoded, wanted, landscape, storage, run):
    lookup_many, store = storage
    batch_tokens, stats, mode, layout = run
    missing, found = set(), lookup_many([interval_name(start, end) for start, end in sorted(wanted)])
    for start, end in sorted(wanted):
        point = found[interval_name(start, end)]
        if point is None:
            missing.add((start, end))
        else:
            landscape.intervals[(start, end)] = point
    if landscape.intervals:
        yield landscape
    if missing:
        layout.scoring()
        for result in sweep_intervals(
            pair, layout.encoded, missing, batch_tokens, stats, mode, layout.reference
        ):
            point = store(interval_name(result.start, result.end), _point(result.per_prompt))
            landscape.intervals[(result.start, result.end)] = point
            yield landscape


def _first_token_intervals(pair, encoded, wanted, landscape, use_cache, run):
    # Q and D only: rows without answer branches and one LM-head call per interval instead of up to
    # four, for a quick coarse map. The cache takes only four-number results, so these are kept
    # together as one JSON value (one read, one small write per result).
    batch_tokens, stats, mode = run
    key = cache.result_key(_contexts(pair, encoded, mode)("interval/"), "first-token-intervals")
    known = (cache.get_json(key) if use_cache else None) or {}
    missing = set()
    for start, end in sorted(wanted):
        value = known.get(f"{start}-{end}") if isinstance(known, dict) else None
        if isinstance(value, list) and len(value) == 2 and all(isinstance(x, float) for x in value):
            landscape.intervals[(start, end)] = Point(*value)
        else:
            missing.add((start, end))
    known = known if isinstance(known, dict) else {}
    if landscape.intervals:
        yield landscape
    results = (
        sweep_intervals(pair, encoded, missing, batch_tokens, stats, mode, strict=False) if missing else ()
    )
    for result in results:
        point = _point(result.per_prompt)
        landscape.intervals[(result.start, result.end)] = point
        known[f"{result.start}-{result.end}"] = [point.quality, point.diversity]
        if use_cache:
            cache.put_json(key, known)
        yield landscape


def _soup(pair, layout, landscape, lookup, store, stats):
    scratch = None
    for alpha in ALPHAS:
        point = lookup(soup_name(alpha))
        if point is None:
            scratch = scratch or copy.deepcopy(pair.post)
            blend_into(scratch, pair, alpha)
            encoded_laid_out, batch, _ = layout.scoring()
            scores = checked_scores(pair, scratch, encoded_laid_out, batch, stats, layout.reference)
            point = store(soup_name(alpha), _point(scores))
        landscape.soup[alpha] = point
        yield landscape


SHIPPED_DIR = Path(__file__).resolve().parents[2] / "assets" / "landscapes"


def shipped_points(context: str, folder: Path | None = None) -> dict[str, Point]:
    """Results of a landscape CSV shipped with the repo whose provenance matches `context`."""
    for meta_path in sorted((folder or SHIPPED_DIR).glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        if meta.get("cache_context") != context or meta.get("schema") != cache.SCHEMA_VERSION:
            continue
        rows = csv.DictReader(meta_path.with_name(meta_path.name.replace(".meta.json", ".csv")).open())
        return {_row_name(row): Point(*(_float(row.get(metric)) for metric in METRICS)) for row in rows}
    return {}


def _shipped(context: Callable[[str], str]) -> dict[str, Point]:
    # Each result only from a shipped landscape of its own context (never another mode's intervals).
    found = {}
    for shared_or_own in dict.fromkeys((context("post"), context("interval/"))):
        points = shipped_points(shared_or_own)
        found.update({name: point for name, point in points.items() if context(name) == shared_or_own})
    return found


def _float(text: str | None) -> float | None:
    # A column a CSV written before it existed lacks (answer_diversity) reads as missing.
    return None if text is None or text == "" else float(text)


def _row_name(row: dict) -> str:
    if row["kind"] == "interval":
        return interval_name(int(row["start"]), int(row["end"]))
    if row["kind"] == "soup":
        return soup_name(float(row["alpha"]))
    return row["kind"]


def _point(per_prompt: torch.Tensor) -> Point:
    return Point(*crc_means(per_prompt))


def _stored_point(value: dict) -> Point:
    return Point(*(value.get(metric) for metric in METRICS))


def _meta(pair: ModelPair, encoded: EncodedPrompts, context: str, mode: str = "layer") -> dict:
    return {
        **pair.provenance(),
        "prompt_set": encoded.digest,
        "num_prompts": len(encoded),
        "restore": mode,
        "cache_context": context,
        "code_version": cache.code_version(),
        "schema": cache.SCHEMA_VERSION,
    }


def complete(iterator: Iterator[Landscape]) -> Landscape:
    """Drain a survey and return the final landscape."""
    landscape = None
    for landscape in iterator:  # noqa: B007 (we want the last one)
        pass
    return landscape


# ---------------------------------------------------------------- first look: coarse, then full

# Prompts in the coarse pass, spread over the set ([0, 20] of the 40 default ones: a digit and a letter
# prompt). Its intervals get Q and D only: strict CRC's answer branches widen every row and add up to
# three LM-head calls (262k-way) per interval. With 2 prompts the demo pair's coarse map takes about
# 30 s on a 2-core CPU (README, "First look").
COARSE_PROMPTS = 2


def coarse_indices(num_prompts: int, count: int = COARSE_PROMPTS) -> list[int]:
    """`count` prompt indices spread evenly over the set, the same every time (all when it is small)."""
    if num_prompts <= count:
        return list(range(num_prompts))
    return [k * num_prompts // count for k in range(count)]


def first_look(
    pair: ModelPair,
    encoded: EncodedPrompts,
    intervals: set[tuple[int, int]] | None = None,
    soup: bool = False,
    use_cache: bool = True,
    batch_tokens: int = 16384,
    stats: Stats | None = None,
    mode: str = "layer",
    coarse_prompts: int = COARSE_PROMPTS,
    coarse_strict: bool = False,
) -> Iterator[Landscape]:
    """Like survey, but first a coarse map of every interval on a few prompts, then the full results.

    One landscape, with the full set's provenance, is yielded after each result; `landscape.coarse`
    holds what is still measured on the subset only. Coarse intervals carry Q and D only (stop and
    strict quality None) unless `coarse_strict`; coarse references carry all four. The subset has
    its own cache context (EncodedPrompts.subset has its own digest), so a restart resumes either pass.
    """
    wanted = intervals if intervals is not None else all_intervals(pair.num_layers)
    meta = _meta(pair, encoded, _contexts(pair, encoded, mode)("interval/"), mode)
    known = stored_landscape(pair, encoded, mode) if use_cache else Landscape(pair.num_layers)
    shown = Landscape(pair.num_layers, known.post, known.pre, dict(known.intervals), dict(known.soup), meta)
    needed = wanted - shown.intervals.keys()
    subset = encoded.subset(coarse_indices(len(encoded), coarse_prompts))
    if needed and len(subset) < len(encoded):
        shown.meta["coarse_prompts"] = len(subset)  # what a "coarse" label says: k of num_prompts
        coarse_run = survey(
            pair, subset, needed, False, use_cache, batch_tokens, stats, mode, strict=coarse_strict
        )
        for coarse in coarse_run:
            _overlay(shown, coarse, coarse=True)
            yield shown
    for full in survey(pair, encoded, wanted, soup, use_cache, batch_tokens, stats, mode):
        _overlay(shown, full, coarse=False)
        yield shown


def _overlay(shown: Landscape, part: Landscape, coarse: bool) -> None:
    # Coarse results fill only what has no full result; full results replace coarse ones.
    for name in ("post", "pre"):
        point = getattr(part, name)
        if point is not None and not (
            coarse and getattr(shown, name) is not None and name not in shown.coarse
        ):
            setattr(shown, name, point)
            _mark(shown, name, coarse)
    for key, point in part.intervals.items():
        if coarse and key in shown.intervals and key not in shown.coarse:
            continue
        shown.intervals[key] = point
        _mark(shown, key, coarse)
    shown.soup.update(part.soup)


def _mark(shown: Landscape, key, coarse: bool) -> None:
    if coarse:
        shown.coarse.add(key)
    else:
        shown.coarse.discard(key)


def missing_intervals(landscape: Landscape) -> set[tuple[int, int]]:
    """The intervals without a full result yet (absent or coarse): what a sweep still has to compute."""
    return all_intervals(landscape.num_layers) - (landscape.intervals.keys() - landscape.coarse)
