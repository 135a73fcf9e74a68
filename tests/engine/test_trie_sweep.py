"""Answers of several tokens, laid out as tries in the shared-work sweep, equal the naive definitions."""

import json

import pytest
import torch
from conftest import FAMILIES

from slr_core.crc import branches
from slr_core.crc import trie as trie_module
from slr_core.crc.branches import make_batch
from slr_core.crc.prompts import CRCPrompt, default_prompts, encode_prompts
from slr_core.crc.trie import unsayable_answers
from slr_core.engine import layouts, scoring
from slr_core.engine.cached_sweep import all_intervals
from slr_core.engine.capture import capture, check_branches
from slr_core.engine.naive import naive_interval_scores, naive_scores
from slr_core.engine.sweep import Stats, model_scores, sweep_intervals
from slr_core.errors import PromptSetError, UnsupportedArchitectureError
from slr_core.models.chat import end_of_turn_ids
from slr_core.models.loading import load_pair
from slr_core.models.settings import Settings
from slr_core.slr.soup import soup_model

pytestmark = pytest.mark.usefixtures("one_thread")

NUMBERS = CRCPrompt(
    "Generate a random integer in the range [1, 12]. Do not include anything else in your reply.",
    tuple(str(n) for n in range(1, 13)),  # "1" is a prefix of "10", "11", "12"
)
# "Ran" / "Random": a prefix pair of words; "CD E": whitespace inside an answer (where it can be said).
WORDS = ("Ran", "Random", "AB", "CD E")


def _prompts(tokenizer, digits: bool = True) -> list[CRCPrompt]:
    words = tuple(a for a in WORDS if a not in unsayable_answers(tokenizer, WORDS))
    prompts = [NUMBERS, CRCPrompt("Name a word of this request.", words)]
    # A digit and a letter prompt of the paper's set: single-token tries beside deep ones.
    return prompts + ([default_prompts()[0], default_prompts()[20]] if digits else [])


def _assert_equal(swept: torch.Tensor, naive: torch.Tensor, where) -> None:
    assert swept.shape == naive.shape == (len(naive), 5), where
    others = [0, 1, 2, 4]  # Q, D, stop, answer_diversity: absolute
    assert torch.allclose(swept[:, others], naive[:, others], atol=1e-4, rtol=0), (where, swept, naive)
    gap = (swept[:, 3] - naive[:, 3]).abs()  # strict quality can be tiny: relative too
    assert bool((gap <= 1e-3 * naive[:, 3].abs() + 1e-12).all()), (where, gap.max().item())


def _pruned_word_prompt(tokenizer, monkeypatch):
    # One word prompt whose trie is one node over the cap: pruned, with room to widen.
    prompt = CRCPrompt("Name a word of this request.", ("Random", "12"))
    full = len(trie_module.build_trie(tokenizer, prompt.valid))
    monkeypatch.setattr(trie_module, "SHORT_SEQUENCES", 1)
    monkeypatch.setattr(trie_module, "MAX_TRIE_NODES", full - 1)
    return encode_prompts(tokenizer, [prompt])


@pytest.mark.parametrize("family", FAMILIES)
def test_trie_sweep_equals_naive_for_every_interval_and_model(tiny_paths, family):
    pre, post = tiny_paths(family)
    pair = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))
    encoded = encode_prompts(pair.tokenizer, _prompts(pair.tokenizer))
    assert max(max(trie.depth) for trie in encoded.tries) >= 2, family
    wanted = all_intervals(pair.num_layers)
    stats = Stats()
    swept = {(r.start, r.end): r.per_prompt for r in sweep_intervals(pair, encoded, wanted, 400, stats)}
    assert set(swept) == wanted and stats.omitted_mass == 0.0  # full tries: nothing left out
    for (start, end), per_prompt in swept.items():
        _assert_equal(per_prompt, naive_interval_scores(pair, encoded, start, end), (family, start, end))
    batch = make_batch(encoded, pair.tokenizer.pad_token_id, pair.device)
    end_ids = end_of_turn_ids(pair.tokenizer)
    for model in (pair.post, pair.pre, soup_model(pair, 0.35)):
        _assert_equal(
            model_scores(model, encoded, batch, end_ids), naive_scores(model, pair.tokenizer, encoded), family
        )


@pytest.mark.parametrize("mode", ["attention", "mlp"])
def test_partial_restoration_sweeps_tries_exactly(tiny_paths, mode):
    pre, post = tiny_paths("gemma3")
    pair = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))
    encoded = encode_prompts(pair.tokenizer, _prompts(pair.tokenizer, digits=False))
    for result in sweep_intervals(pair, encoded, {(0, 1), (1, 3), (3, 3)}, mode=mode):
        naive = naive_interval_scores(pair, encoded, result.start, result.end, mode=mode)
        _assert_equal(result.per_prompt, naive, (mode, result.start, result.end))


def test_the_start_up_check_catches_a_node_that_does_not_see_its_ancestors(tiny_pair, monkeypatch):
    encoded = encode_prompts(tiny_pair.tokenizer, _prompts(tiny_pair.tokenizer, digits=False))
    batch = make_batch(encoded, tiny_pair.tokenizer.pad_token_id, tiny_pair.device)
    check_branches(tiny_pair.post, capture(tiny_pair.post, batch), batch)  # the right layout passes
    right = branches._columns

    def blind(batch, p, width):  # every node sees the prompt and itself only, as single tokens do
        columns = right(batch, p, width)
        ancestors = batch.ancestors[p]
        for q in range(width):
            chain = ancestors[q][ancestors[q] >= 0]
            columns[q, chain[:-1]] = width - 1
        return columns

    monkeypatch.setattr(branches, "_columns", blind)
    with pytest.raises(UnsupportedArchitectureError, match="scoring answer tokens as branches"):
        check_branches(tiny_pair.post, capture(tiny_pair.post, batch), batch)


def test_skipped_nodes_stay_within_the_bound_on_q_and_strict(tiny_pair, monkeypatch):
    encoded = encode_prompts(tiny_pair.tokenizer, _prompts(tiny_pair.tokenizer, digits=False))
    batch = make_batch(encoded, tiny_pair.tokenizer.pad_token_id, tiny_pair.device)
    end_ids = end_of_turn_ids(tiny_pair.tokenizer)
    monkeypatch.setattr(scoring, "SKIP_TIERS", (0.0,))
    monkeypatch.setattr(scoring, "SKIP_RELATIVE", 0.0)  # settled only once nothing is left unscored
    every = Stats()
    exact = model_scores(tiny_pair.pre, encoded, batch, end_ids, every)
    assert every.branches_skipped == 0
    _assert_equal(exact, naive_scores(tiny_pair.pre, tiny_pair.tokenizer, encoded), "every node")
    # A loose bound skips nodes deep in the tries; Q and strict quality move by at most that fraction.
    monkeypatch.setattr(scoring, "SKIP_TIERS", (1e-3, 0.0))
    monkeypatch.setattr(scoring, "SKIP_RELATIVE", 0.5)
    loose = Stats()
    approximate = model_scores(tiny_pair.pre, encoded, batch, end_ids, loose)
    assert loose.branches_skipped > 0
    for column in (0, 3):  # skipping only drops non-negative terms, at most 0.5 of what was found
        error = exact[:, column] - approximate[:, column]
        assert bool((error >= -1e-15).all()) and bool((error <= 0.5 * approximate[:, column] + 1e-15).all())


def test_a_pruned_layout_measures_what_it_leaves_out_and_refuses_too_much(tiny_pair, monkeypatch):
    # Force the pruned layout (spellings of one token plus each answer's own tokenisation).
    monkeypatch.setattr(trie_module, "MAX_TRIE_NODES", 4)
    monkeypatch.setattr(trie_module, "SHORT_SEQUENCES", 1)
    monkeypatch.setattr(layouts, "WIDEN_ROUNDS", 0)  # as laid out: no widening
    prompt = CRCPrompt("Name a word of this request.", ("Random", "12"))
    encoded = encode_prompts(tiny_pair.tokenizer, [prompt])
    assert encoded.tries[0].omitted or encoded.tries[0].root_omitted
    exact = naive_interval_scores(tiny_pair, encoded, 1, 2)
    monkeypatch.setattr(scoring, "OMITTED_TOLERANCE", float("inf"))
    stats = Stats()
    pruned = next(iter(sweep_intervals(tiny_pair, encoded, {(1, 2)}, stats=stats))).per_prompt
    assert stats.omitted_mass > 0
    for column in (0, 3):  # what is left out is missing, and at most the measured mass
        error = exact[:, column] - pruned[:, column]
        assert bool((error >= -1e-12).all()) and bool((error <= stats.omitted_mass + 1e-12).all())
    assert 0 < stats.omitted_share < float("inf")
    monkeypatch.setattr(scoring, "OMITTED_TOLERANCE", stats.omitted_share / 2)
    with pytest.raises(PromptSetError, match="left out of the trie layout carry"):
        list(sweep_intervals(tiny_pair, encoded, {(1, 2)}))


def test_shards_of_a_trie_sweep_merge_into_the_single_process_csv(tiny_paths, tmp_path):
    from slr_core.cli import main

    pre, post = tiny_paths("llama")
    pair = load_pair(str(pre), str(post), Settings(device="cpu"))
    # The word prompts go in as the user's own file: a patched default set would reach the CLI only
    # where it was imported after the patch, and then stay patched for later tests.
    chosen = tmp_path / "words.json"
    rows = [
        {"instruction": p.instruction, "valid": list(p.valid)} for p in _prompts(pair.tokenizer, digits=False)
    ]
    chosen.write_text(json.dumps(rows))
    common = ["sweep", "--pre", str(pre), "--post", str(post), "--device", "cpu", "--no-cache"]
    common += ["--prompts", str(chosen)]
    single = tmp_path / "single.csv"
    assert main([*common, "--out", str(single)]) == 0
    parts = tmp_path / "parts" / "l.csv"
    for index in (1, 2):
        assert main([*common, "--out", str(parts), "--shard", f"{index}/2"]) == 0
    written = sorted(parts.parent.glob("l.shard-*-of-2.csv"))
    merged = tmp_path / "merged.csv"
    assert main(["merge", *map(str, written), "--out", str(merged)]) == 0
    assert merged.read_bytes() == single.read_bytes()
    header, post_row = single.read_text().splitlines()[:2]
    assert header.endswith(",answer_diversity") and post_row.split(",")[-1] != ""
    meta = json.loads(single.with_suffix(".meta.json").read_text())
    assert (meta["num_prompts"], meta["prompts"]) == (len(rows), str(chosen))  # the word set was swept


def test_widening_lays_out_what_post_and_pre_say_until_little_is_left_out(tiny_pair, monkeypatch):
    from slr_core.engine.sweep import widen_layout

    encoded = _pruned_word_prompt(tiny_pair.tokenizer, monkeypatch)
    widened = widen_layout(tiny_pair, encoded)
    full = len(trie_module.build_trie(tiny_pair.tokenizer, encoded.prompts[0].valid))
    assert len(encoded.tries[0]) < len(widened.tries[0]) < full
    batch = make_batch(widened, tiny_pair.tokenizer.pad_token_id, tiny_pair.device)
    end_ids, left = end_of_turn_ids(tiny_pair.tokenizer), []
    for model in (tiny_pair.post, tiny_pair.pre):
        walks = []
        model_scores(model, widened, batch, end_ids, walks=walks)
        left.append(walks[0].omitted_share())
    assert max(left) <= scoring.OMITTED_TOLERANCE / 10
    # The sweep widens on its own, and its numbers are the naive ones.
    for result in sweep_intervals(tiny_pair, encoded, {(0, 1), (2, 3)}):
        naive = naive_interval_scores(tiny_pair, encoded, result.start, result.end)
        assert torch.allclose(result.per_prompt[:, :3], naive[:, :3], atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_an_interval_over_the_tolerance_is_laid_out_again_for_its_own_hybrid(tiny_paths, family, monkeypatch):
    from slr_core.engine.capture import Reference

    pre, post = tiny_paths(family)
    tiny_pair = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))
    encoded = _pruned_word_prompt(tiny_pair.tokenizer, monkeypatch)
    # A caller's reference means the layout is used as laid out (not widened): the pruned trie leaves
    # out far more than the tolerance, so each interval is laid out again for its hybrid.
    reference = Reference(
        tiny_pair.post, make_batch(encoded, tiny_pair.tokenizer.pad_token_id, tiny_pair.device)
    )
    stats = Stats()
    results = list(sweep_intervals(tiny_pair, encoded, {(0, 1), (2, 3)}, stats=stats, reference=reference))
    assert stats.prompts_relaid == 2 and stats.omitted_share > scoring.OMITTED_TOLERANCE, family
    assert stats.heads_reused > 0, family  # relays visit the nodes earlier layouts ran from those heads
    assert stats.relays_seeded == 1, family  # [2, 3] starts from the layout [0, 1]'s relay ended with
    for result in results:
        naive = naive_interval_scores(tiny_pair, encoded, result.start, result.end)
        where = (family, result.start, result.end)
        assert torch.allclose(result.per_prompt[:, :3], naive[:, :3], atol=1e-4, rtol=0), where
        assert torch.allclose(result.per_prompt[:, 3], naive[:, 3], atol=1e-4, rtol=1e-3), where
    # Without rounds to widen in, the relaid layout is the same and the result is refused, not returned.
    monkeypatch.setattr(layouts, "WIDEN_ROUNDS", 0)
    with pytest.raises(PromptSetError, match="left out of the trie layout carry"):
        list(sweep_intervals(tiny_pair, encoded, {(0, 1)}, reference=reference))


def test_prompts_relaid_together_finish_on_their_own_and_seed_the_next_relay(tiny_pair, monkeypatch):
    from slr_core.engine.capture import Reference

    # Every trie pruned: both prompts leave out far more than the tolerance at every interval, and are
    # relaid together; each is scored from the round that brings it under the bar, and later
    # intervals start from the layout the last relay ended with.
    monkeypatch.setattr(trie_module, "FULL_LAYOUT_NODES", 4)
    encoded = encode_prompts(tiny_pair.tokenizer, _prompts(tiny_pair.tokenizer, digits=False))
    assert all(trie.omitted or trie.root_omitted for trie in encoded.tries)
    reference = Reference(
        tiny_pair.post, make_batch(encoded, tiny_pair.tokenizer.pad_token_id, tiny_pair.device)
    )
    stats, wanted = Stats(), {(0, 1), (0, 2), (1, 3)}
    results = list(sweep_intervals(tiny_pair, encoded, wanted, stats=stats, reference=reference))
    assert stats.prompts_relaid == 6 and stats.relays_seeded == 4
    for result in results:
        naive = naive_interval_scores(tiny_pair, encoded, result.start, result.end)
        _assert_equal(result.per_prompt, naive, (result.start, result.end))


def test_a_stored_landscape_of_pruned_tries_is_read_without_widening(tiny_pair, monkeypatch):
    from slr_core.engine import cached_sweep

    monkeypatch.setattr(trie_module, "SHORT_SEQUENCES", 1)
    monkeypatch.setattr(trie_module, "MAX_TRIE_NODES", 6)
    encoded = encode_prompts(
        tiny_pair.tokenizer, [CRCPrompt("Name a word of this request.", ("Random", "12"))]
    )
    assert encoded.tries[0].omitted or encoded.tries[0].root_omitted
    monkeypatch.setattr(scoring, "OMITTED_TOLERANCE", float("inf"))  # the tiny cap leaves much out
    first = cached_sweep.complete(cached_sweep.survey(tiny_pair, encoded, {(0, 1), (2, 3)}, soup=True))

    def refuse(*args):
        raise AssertionError("a stored landscape needs no model pass")

    monkeypatch.setattr(cached_sweep, "widened_once", refuse)
    again = cached_sweep.complete(cached_sweep.survey(tiny_pair, encoded, {(0, 1), (2, 3)}, soup=True))
    assert again.rows() == first.rows() and again.post.answer_diversity is not None


def test_a_resumed_survey_reads_its_widened_layout_from_the_cache(tiny_pair, monkeypatch):
    from slr_core.engine import cached_sweep

    encoded = _pruned_word_prompt(tiny_pair.tokenizer, monkeypatch)
    widened = []
    real = layouts.widen_layout
    monkeypatch.setattr(layouts, "widen_layout", lambda *args: widened.append(real(*args)) or widened[-1])
    cached_sweep.complete(cached_sweep.survey(tiny_pair, encoded, {(0, 1)}))
    assert len(widened) == 1 and len(widened[0].tries[0]) > len(encoded.tries[0])
    # Another run of the same prompts (new intervals) starts from the stored layout: no widening.
    again = cached_sweep.complete(cached_sweep.survey(tiny_pair, encoded, {(2, 3)}, references=False))
    assert len(widened) == 1
    naive, point = naive_interval_scores(tiny_pair, encoded, 2, 3), again.intervals[(2, 3)]
    numbers = [point.quality, point.diversity, point.stop, point.strict_quality, point.answer_diversity]
    _assert_equal(torch.tensor([numbers], dtype=naive.dtype), naive, (2, 3))  # one prompt: its means
