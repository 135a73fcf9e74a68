"""The shared-work sweep equals the naive paper-style evaluation, for every supported family."""

import pytest
import torch
from conftest import FAMILIES

from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.cached_sweep import all_intervals
from slr_core.engine.naive import naive_interval_scores
from slr_core.engine.sweep import Stats, make_batch, model_scores, sweep_intervals
from slr_core.models.chat import end_of_turn_ids
from slr_core.models.loading import load_pair
from slr_core.models.settings import Settings
from slr_core.slr.soup import soup_model

pytestmark = pytest.mark.usefixtures("one_thread")


# Digit and letter prompts of different lengths and answer counts: padding, windows and branches vary.
# (The naive reference runs one full forward per prompt and per answer, so not all 40 per family.)
EXACTNESS_PROMPTS = [0, 2, 16, 22, 31, 36]


@pytest.mark.parametrize("family", FAMILIES)
def test_sweep_equals_naive_for_every_interval(tiny_paths, family):
    pre, post = tiny_paths(family)
    pair = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))
    encoded = encode_prompts(pair.tokenizer, default_prompts()).subset(EXACTNESS_PROMPTS)
    wanted = all_intervals(pair.num_layers)
    # A small memory knob forces several chunks per layer call, so chunking is covered too.
    stats = Stats()
    swept = {
        (r.start, r.end): r.per_prompt
        for r in sweep_intervals(pair, encoded, wanted, batch_tokens=200, stats=stats)
    }
    assert set(swept) == wanted
    # Every family takes the fast path (shared prefix, narrowed last layer), proven on its post model.
    assert stats.layout.prefix > 0 and stats.layout.narrow_last, (family, stats.layout)
    for (start, end), per_prompt in swept.items():
        naive = naive_interval_scores(pair, encoded, start, end)
        assert torch.allclose(per_prompt, naive, atol=1e-4, rtol=0), (family, start, end)
    # The post-trained and pre-trained references, batched, equal one-prompt-at-a-time runs too.
    batch, end_ids = (
        make_batch(encoded, pair.tokenizer.pad_token_id, pair.device),
        end_of_turn_ids(pair.tokenizer),
    )
    for model in (pair.post, pair.pre):
        batched = model_scores(model, encoded, batch, end_ids)
        single = torch.stack(
            [model_scores(model, _only(encoded, k), _batch(pair, encoded, k), end_ids)[0] for k in range(3)]
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
    # naive: N layers per interval for prompt + t, for every valid t (its position L - 1 gives p(t | x)).
    sequences = sum(len(tokens) for tokens in encoded.token_ids)
    assert naive_stats.layer_evals == sequences * n * len(wanted)
    # sweep: one row per prompt (its branches ride along) through the tail of each interval,
    # plus one pre-trained layer per live start.
    tail = sum(n - 1 - end for _, end in wanted)
    extensions = sum(n - start for start in range(n))
    assert sweep_stats.layer_evals == p * (tail + extensions)
    # In tokens the branch rows cost one position per answer, not a whole prompt per answer.
    assert sweep_stats.token_layer_evals * 3 < naive_stats.token_layer_evals


def test_subset_of_intervals_only_computes_those(tiny_pair):
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()[:3])
    results = list(sweep_intervals(tiny_pair, encoded, {(1, 2), (3, 3)}))
    assert sorted((r.start, r.end) for r in results) == [(1, 2), (3, 3)]


def test_soup_endpoints_are_the_two_models(tiny_pair):
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()[:5])
    batch = make_batch(encoded, tiny_pair.tokenizer.pad_token_id, tiny_pair.device)
    end_ids = end_of_turn_ids(tiny_pair.tokenizer)
    post, pre = (model_scores(model, encoded, batch, end_ids) for model in (tiny_pair.post, tiny_pair.pre))
    assert torch.allclose(model_scores(soup_model(tiny_pair, 0.0), encoded, batch, end_ids), post, atol=1e-6)
    assert torch.allclose(model_scores(soup_model(tiny_pair, 1.0), encoded, batch, end_ids), pre, atol=1e-6)
