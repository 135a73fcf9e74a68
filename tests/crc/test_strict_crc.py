"""Strict CRC (stop rate, strict quality) from the sweep equals plain forwards of prompt + answer."""

import pytest
import torch
from conftest import FAMILIES
from tiny_pairs import build_tokenizer

from slr_core.crc.branches import make_batch
from slr_core.crc.prompts import answer_probabilities, default_prompts, encode_prompts
from slr_core.engine import scoring
from slr_core.engine.cached_sweep import all_intervals
from slr_core.engine.capture import Reference, replay
from slr_core.engine.naive import naive_interval_scores, naive_scores
from slr_core.engine.sweep import Stats, model_scores, sweep_intervals
from slr_core.models.chat import end_of_turn_ids
from slr_core.models.loading import load_pair
from slr_core.models.settings import Settings
from slr_core.slr.soup import soup_model


def _prompts(tokenizer):
    # Digit and letter prompts, so rows differ in width (branch counts) and chunks get cut.
    prompts = default_prompts()
    return encode_prompts(tokenizer, prompts[:3] + prompts[20:24])


def _assert_equal(swept: torch.Tensor, naive: torch.Tensor, where) -> None:
    assert torch.allclose(swept[:, :3], naive[:, :3], atol=1e-4, rtol=0), where
    # Strict quality can be tiny: compare it relatively as well as absolutely.
    gap = (swept[:, 3] - naive[:, 3]).abs()
    assert bool((gap <= 1e-3 * naive[:, 3].abs() + 1e-12).all()), (where, gap.max().item())


@pytest.mark.parametrize("family", FAMILIES)
def test_strict_scores_equal_naive_forwards(tiny_paths, family):
    pre, post = tiny_paths(family)
    pair = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))
    encoded = _prompts(pair.tokenizer)
    wanted = all_intervals(pair.num_layers)
    # A small memory knob forces several width-cut chunks per layer call.
    results = list(sweep_intervals(pair, encoded, wanted, batch_tokens=200))
    assert {(r.start, r.end) for r in results} == wanted
    for result in results:
        naive = naive_interval_scores(pair, encoded, result.start, result.end)
        _assert_equal(result.per_prompt, naive, (family, result.start, result.end))
    batch = make_batch(encoded, pair.tokenizer.pad_token_id, pair.device)
    end_ids = end_of_turn_ids(pair.tokenizer)
    for model in (pair.post, pair.pre, soup_model(pair, 0.35)):
        _assert_equal(
            model_scores(model, encoded, batch, end_ids), naive_scores(model, pair.tokenizer, encoded), family
        )


def test_stop_is_strict_over_quality_and_in_range(tiny_pair):
    encoded = _prompts(tiny_pair.tokenizer)
    per_prompt = next(iter(sweep_intervals(tiny_pair, encoded, {(1, 2)}))).per_prompt
    quality, stop, strict = per_prompt[:, 0], per_prompt[:, 2], per_prompt[:, 3]
    assert bool(((stop >= 0) & (stop <= 1 + 1e-9)).all())
    assert bool((strict <= quality + 1e-12).all())
    assert torch.allclose(stop * quality, strict, rtol=1e-9, atol=0)


def test_skipped_branches_change_nothing_measurable(tiny_pair, monkeypatch):
    encoded = _prompts(tiny_pair.tokenizer)
    batch = make_batch(encoded, tiny_pair.tokenizer.pad_token_id, tiny_pair.device)
    end_ids = end_of_turn_ids(tiny_pair.tokenizer)
    every = Stats()
    monkeypatch.setattr(scoring, "SKIP_TIERS", (0.0,))
    exact = model_scores(tiny_pair.pre, encoded, batch, end_ids, every)
    assert every.branches_skipped == 0
    # The shipped tiers: whatever they skip moves strict quality by at most SKIP_RELATIVE of it.
    monkeypatch.setattr(scoring, "SKIP_TIERS", (1e-4, 1e-8, 0.0))
    tiered = Stats()
    shipped = model_scores(tiny_pair.pre, encoded, batch, end_ids, tiered)
    assert tiered.head_rows + tiered.branches_skipped == every.head_rows
    _assert_within_bound(exact, shipped, scoring.SKIP_RELATIVE)
    # No tier reaches a branch: the last tier must still score every prompt that is not settled.
    monkeypatch.setattr(scoring, "SKIP_TIERS", (2.0, 0.0))
    second_look = Stats()
    assert torch.equal(model_scores(tiny_pair.pre, encoded, batch, end_ids, second_look), exact)
    assert second_look.head_rows == every.head_rows
    # With a loose bound, the less likely half of the branches is skipped; the error stays under it.
    monkeypatch.setattr(scoring, "SKIP_TIERS", (_median_answer_probability(tiny_pair.pre, encoded), 0.0))
    monkeypatch.setattr(scoring, "SKIP_RELATIVE", 1000.0)
    loose = Stats()
    approximate = model_scores(tiny_pair.pre, encoded, batch, end_ids, loose)
    assert loose.branches_skipped > 0
    _assert_within_bound(exact, approximate, 1000.0)


def _assert_within_bound(exact: torch.Tensor, approximate: torch.Tensor, relative: float) -> None:
    error = exact[:, 3] - approximate[:, 3]
    assert bool((error >= -1e-15).all())  # skipping only drops non-negative terms
    assert bool((error <= relative * approximate[:, 3] + 1e-15).all())
    assert torch.equal(approximate[:, :2], exact[:, :2])


@torch.no_grad()
def _median_answer_probability(model, encoded) -> float:
    probs = []
    for p, ids in enumerate(encoded.input_ids):
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[:, -1].float()
        probs.append(answer_probabilities(logits, encoded, [p])[0])
    return float(torch.cat(probs).median())


CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.mark.parametrize(
    ("template", "marker"),
    [(None, "<end_of_turn>"), (CHATML, "<|im_end|>"), (LLAMA3, "<|eot_id|>")],
)
def test_end_of_turn_ids_are_eos_and_the_templates_marker(tmp_path, template, marker):
    tokenizer = build_tokenizer(tmp_path)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|start_header_id|>"]}
    )
    if template:
        tokenizer.chat_template = template
    expected = sorted({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(marker)})
    assert end_of_turn_ids(tokenizer) == expected


def test_models_replaying_the_post_models_layer_calls_score_as_if_recorded(tiny_paths):
    pre, post = tiny_paths("gemma3")  # sliding and global layers: two kinds of recorded masks
    pair = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))
    encoded = _prompts(pair.tokenizer)
    batch = make_batch(encoded, pair.tokenizer.pad_token_id, pair.device)
    end_ids, reference = end_of_turn_ids(pair.tokenizer), Reference(pair.post, batch)
    for model in (pair.pre, soup_model(pair, 0.35)):
        replayed = model_scores(model, encoded, batch, end_ids, reference=reference)
        assert torch.allclose(replayed, model_scores(model, encoded, batch, end_ids), atol=1e-6, rtol=0)
        _assert_equal(replayed, naive_scores(model, pair.tokenizer, encoded), "replayed")
    # A batch laid out differently has other layer-0 arguments: no replay, a fresh recording.
    other = encode_prompts(pair.tokenizer, default_prompts()[:2])
    other_batch = make_batch(other, pair.tokenizer.pad_token_id, pair.device)
    assert replay(pair.pre, other_batch, reference.capture()) is None
