"""The shared-work sweep equals the naive paper-style evaluation, for every supported family."""

import pytest
import torch
from conftest import FAMILIES

from slr_core.crc import default_prompts, encode_prompts
from slr_core.models import Settings, load_pair
from slr_core.soup import soup_model
from slr_core.survey import all_intervals
from slr_core.sweep import Stats, make_batch, model_scores, naive_interval_scores, sweep_intervals


@pytest.mark.parametrize("family", FAMILIES)
def test_sweep_equals_naive_for_every_interval(tiny_paths, family):
    pre, post = tiny_paths(family)
    pair = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))
    encoded = encode_prompts(pair.tokenizer, default_prompts())
    wanted = all_intervals(pair.num_layers)
    # A small memory knob forces several chunks per layer call, so chunking is covered too.
    swept = {(r.start, r.end): r.per_prompt for r in sweep_intervals(pair, encoded, wanted, batch_tokens=700)}
    assert set(swept) == wanted
    for (start, end), per_prompt in swept.items():
        naive = naive_interval_scores(pair, encoded, start, end)
        assert torch.allclose(per_prompt, naive, atol=1e-4, rtol=0), (family, start, end)
    # The post-trained and pre-trained references, batched, equal one-prompt-at-a-time runs too.
    batch = make_batch(encoded, pair.tokenizer.pad_token_id, pair.device)
    for model in (pair.post, pair.pre):
        batched = model_scores(model, encoded, batch)
        single = torch.stack(
            [model_scores(model, _only(encoded, k), _batch(pair, encoded, k))[0] for k in range(3)]
        )
        assert torch.allclose(batched[:3], single, atol=1e-4, rtol=0)


def _only(encoded, k):
    return encoded.subset([k])


def _batch(pair, encoded, k):
    return make_batch(_only(encoded, k), pair.tokenizer.pad_token_id, pair.device)


def test_sweep_does_about_a_third_of_the_naive_layer_work(tiny_pair):
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()[:4])
    wanted = all_intervals(tiny_pair.num_layers)
    sweep_stats, naive_stats = Stats(), Stats()
    list(sweep_intervals(tiny_pair, encoded, wanted, stats=sweep_stats))
    for start, end in wanted:
        naive_interval_scores(tiny_pair, encoded, start, end, naive_stats)
    n, p = tiny_pair.num_layers, len(encoded)
    # naive: N per interval; sweep: sum over intervals of the tail, plus one pre layer per live start.
    assert naive_stats.layer_evals == p * n * len(wanted)
    tail = sum(n - 1 - end for _, end in wanted)
    extensions = sum(n - start for start in range(n))
    assert sweep_stats.layer_evals == p * (tail + extensions)
    assert sweep_stats.layer_evals < naive_stats.layer_evals


def test_subset_of_intervals_only_computes_those(tiny_pair):
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()[:3])
    results = list(sweep_intervals(tiny_pair, encoded, {(1, 2), (3, 3)}))
    assert sorted((r.start, r.end) for r in results) == [(1, 2), (3, 3)]


def test_soup_endpoints_are_the_two_models(tiny_pair):
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()[:5])
    batch = make_batch(encoded, tiny_pair.tokenizer.pad_token_id, tiny_pair.device)
    post, pre = model_scores(tiny_pair.post, encoded, batch), model_scores(tiny_pair.pre, encoded, batch)
    assert torch.allclose(model_scores(soup_model(tiny_pair, 0.0), encoded, batch), post, atol=1e-6)
    assert torch.allclose(model_scores(soup_model(tiny_pair, 1.0), encoded, batch), pre, atol=1e-6)
