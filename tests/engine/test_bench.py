"""The fair naive loop equals the plain one, first-token-only sweeps are exact, and bench reports."""

import pytest
import torch
from conftest import FAMILIES

from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.benchmark import run_benchmark
from slr_core.engine.naive import fair_scores, naive_scores
from slr_core.engine.sweep import sweep_intervals
from slr_core.models.loading import load_pair
from slr_core.models.settings import Settings
from slr_core.slr.hybrid import build_hybrid

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = [0, 16, 22, 36]  # digits and letters: different lengths and answer counts


def _load(tiny_paths, family):
    pre, post = tiny_paths(family)
    return load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))


@pytest.mark.parametrize("family", FAMILIES)
def test_fair_naive_loop_equals_plain_forwards(tiny_paths, family):
    pair = _load(tiny_paths, family)
    encoded = encode_prompts(pair.tokenizer, default_prompts()).subset(PROMPTS)
    for model in (pair.post, build_hybrid(pair, 0, 1)):
        plain = naive_scores(model, pair.tokenizer, encoded)
        fair = fair_scores(model, pair.tokenizer, encoded)
        plain = plain[:, :4]  # the fair loop has no answer_diversity column
        assert torch.allclose(fair, plain, atol=1e-5, rtol=1e-4), (family, (fair - plain).abs().max())
        first_token = fair_scores(model, pair.tokenizer, encoded, strict=False)
        assert torch.allclose(first_token, plain[:, :2], atol=1e-5, rtol=0), family


@pytest.mark.parametrize("family", FAMILIES)
def test_first_token_sweep_equals_naive(tiny_paths, family):
    pair = _load(tiny_paths, family)
    encoded = encode_prompts(pair.tokenizer, default_prompts()).subset(PROMPTS)
    for result in sweep_intervals(pair, encoded, {(0, 0), (1, 2), (0, pair.num_layers - 1)}, strict=False):
        assert result.per_prompt.shape == (len(encoded), 2)
        plain = naive_scores(build_hybrid(pair, result.start, result.end), pair.tokenizer, encoded)[:, :2]
        assert torch.allclose(result.per_prompt, plain, atol=1e-5, rtol=0), (family, result.start, result.end)


def test_bench_reports_both_kinds_and_agrees(tiny_pair, capsys):
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()).subset(PROMPTS)
    figures = run_benchmark(tiny_pair, encoded, "0-1,2-3")
    out = capsys.readouterr().out
    assert set(figures) == {"first-token", "strict"}
    for kind in figures.values():
        assert kind["agree_within_1e-05"] and kind["flop_ratio"] > 0 and kind["sweep_seconds"] > 0
        assert set(kind["phases"]) >= {"capture", "extension", "tails", "head", "python/other"}
    assert "FLOP-count ratio" in out and "sweep phases" in out


def test_sharing_that_cannot_be_proven_falls_back_loudly(tiny_pair, monkeypatch):
    from slr_core.engine import stack
    from slr_core.engine.prefix import Layout, prefix_cache

    # A wrong prefix cache (zero keys and values instead of the prefix's) must be caught.
    def zeroed(keys, values, layer_idx, rows):
        return prefix_cache(keys * 0, values * 0, layer_idx, rows)

    monkeypatch.setattr(stack, "prefix_cache", zeroed)
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()).subset(PROMPTS)
    stats = stack.Stats()
    with pytest.warns(UserWarning, match="falling back"):
        results = list(sweep_intervals(tiny_pair, encoded, {(1, 2)}, stats=stats))
    assert stats.layout == Layout(narrow_last=True)
    plain = naive_scores(build_hybrid(tiny_pair, 1, 2), tiny_pair.tokenizer, encoded)
    assert torch.allclose(results[0].per_prompt, plain, atol=1e-5, rtol=1e-3)
