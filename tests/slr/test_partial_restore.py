"""Partial restoration (attention only, MLP only), any set of layers and fractions: hybrids and sweeps."""

import copy
import csv
import json
from dataclasses import replace

import pytest
import torch
from conftest import FAMILIES

from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine import cached_sweep
from slr_core.engine.cached_sweep import all_intervals, complete, context_id, stored_landscape, survey
from slr_core.engine.lambda_slice import lambda_slice
from slr_core.engine.naive import naive_interval_scores, naive_scores
from slr_core.engine.sweep import sweep_intervals
from slr_core.errors import IntervalError
from slr_core.models.architectures import decoder_layers, is_norm
from slr_core.models.loading import load_pair
from slr_core.models.settings import Settings
from slr_core.slr.hybrid import (
    Restoration,
    build_hybrid,
    build_restored,
    interval_restoration,
    materialised_bytes,
    restored_names,
)
from slr_core.slr.intervals import parse_layers

PARTIAL = ["attention", "mlp"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _load(tiny_paths, family):
    pre, post = tiny_paths(family)
    return load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))


def _weight_copy(pair, restoration: Restoration):
    """The obvious slow reference: copy the post model, then overwrite (or blend) the restored tensors."""
    reference = copy.deepcopy(pair.post)
    lam = restoration.fraction
    for k in restoration.layers:
        target, pre = dict(decoder_layers(reference)[k].named_parameters()), decoder_layers(pair.pre)[k]
        source = dict(pre.named_parameters())
        for name in restored_names(pre, restoration.mode):
            mixed = (1 - lam) * target[name].detach().float() + lam * source[name].detach().float()
            target[name].data.copy_(mixed.to(target[name].dtype))
    return reference


def _ids(pair):
    return torch.randint(3, len(pair.tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- the sweep is exact in every mode

# A digit and a letter prompt of different lengths: padding, windows and branches vary.
PROMPTS = [2, 31]


def _assert_equal(swept, naive, where) -> None:
    assert torch.allclose(swept[:, :3], naive[:, :3], atol=1e-4, rtol=0), where
    gap = (swept[:, 3] - naive[:, 3]).abs()  # strict quality can be tiny: relative as well
    assert bool((gap <= 1e-3 * naive[:, 3].abs() + 1e-12).all()), (where, gap.max().item())


@pytest.mark.parametrize("mode", PARTIAL)
@pytest.mark.parametrize("family", FAMILIES)
def test_partial_sweep_equals_naive_for_every_interval(tiny_paths, family, mode):
    pair = _load(tiny_paths, family)
    encoded = encode_prompts(pair.tokenizer, default_prompts()).subset(PROMPTS)
    wanted = all_intervals(pair.num_layers)
    results = list(sweep_intervals(pair, encoded, wanted, batch_tokens=200, mode=mode))
    assert {(r.start, r.end) for r in results} == wanted
    whole, post = {}, naive_scores(pair.post, pair.tokenizer, encoded)
    for result in results:
        naive = naive_interval_scores(pair, encoded, result.start, result.end, mode=mode)
        _assert_equal(result.per_prompt, naive, (family, mode, result.start, result.end))
        whole[(result.start, result.end)] = naive
    # Teeth: the partial landscape is neither the whole-layer one nor flat.
    last = pair.num_layers - 1
    layer = naive_interval_scores(pair, encoded, 0, last)
    assert not torch.allclose(whole[(0, last)], layer, atol=1e-6, rtol=0), (family, mode)
    assert not torch.allclose(whole[(0, last)], post, atol=1e-6, rtol=0), (family, mode)


# ---------------------------------------------------------------- hybrids: zero-copy, exact, norms post


@pytest.mark.parametrize("mode", PARTIAL)
@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen3", "gpt_neox", "mixtral", "phi3"])
def test_partial_hybrid_equals_weight_copy_and_keeps_every_norm(tiny_paths, family, mode):
    pair = _load(tiny_paths, family)
    before = {name: tensor.clone() for name, tensor in pair.post.state_dict().items()}
    known = {p.data_ptr() for model in (pair.pre, pair.post) for p in model.parameters()}
    ids = _ids(pair)
    for start, end in [(0, 0), (1, pair.num_layers - 1)]:
        hybrid = build_hybrid(pair, start, end, mode)
        expected = _weight_copy(pair, interval_restoration(start, end, mode))(input_ids=ids).logits
        assert torch.equal(hybrid(input_ids=ids).logits, expected), (start, end)
        assert {p.data_ptr() for p in hybrid.parameters()} <= known  # zero-copy
        for k in range(start, end + 1):
            mixed, post, pre = (decoder_layers(m)[k] for m in (hybrid, pair.post, pair.pre))
            restored = set(restored_names(pre, mode))
            assert restored and len(restored) < len(dict(pre.named_parameters()))
            for name, param in mixed.named_parameters():
                owner = pre if name in restored else post
                assert param is dict(owner.named_parameters())[name], (k, name)
            norms = [name for name, module in mixed.named_modules() if is_norm(module)]
            assert norms and all(mixed.get_submodule(n) is post.get_submodule(n) for n in norms)
    for name, tensor in pair.post.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_qk_norms_inside_attention_stay_post_trained(tiny_paths):
    pair = _load(tiny_paths, "qwen3")
    layer = decoder_layers(build_hybrid(pair, 1, 1, "attention"))[1]
    assert layer.self_attn.q_norm is decoder_layers(pair.post)[1].self_attn.q_norm
    assert layer.self_attn.q_proj is decoder_layers(pair.pre)[1].self_attn.q_proj
    assert "self_attn.q_norm.weight" not in restored_names(layer, "attention")


# ---------------------------------------------------------------- free-form sets and fractions


def test_layer_sets_parse_and_bad_ones_are_refused():
    assert parse_layers("3,5,9-11", 12) == (3, 5, 9, 10, 11)
    assert parse_layers(" 2, 1 ,1-2", 4) == (1, 2)
    assert Restoration((3, 5, 9, 10, 11), "mlp", 0.5).label == "layers 3,5,9-11 MLP only, λ=0.5"
    assert interval_restoration(13, 17, "attention").label == "[13, 17] attention only"
    for bad in ["", "3-1", "a", "1-2-3", "12", "-1"]:
        with pytest.raises(IntervalError):
            parse_layers(bad, 12)
    for fraction in (0.0, 1.5, -0.1):
        with pytest.raises(IntervalError, match="lambda"):
            Restoration((1,), "layer", fraction).check(4)
    with pytest.raises(IntervalError, match="restore mode"):
        Restoration((1,), "heads").check(4)


@pytest.mark.parametrize("mode", ["layer", *PARTIAL])
@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_fractional_sets_equal_the_blended_weight_copy(tiny_paths, family, mode):
    pair = _load(tiny_paths, family)
    known = {p.data_ptr() for model in (pair.pre, pair.post) for p in model.parameters()}
    ids, layers = _ids(pair), (0, 2, 3)
    for fraction in (0.3, 1.0):
        restoration = Restoration(layers, mode, fraction)
        hybrid = build_restored(pair, restoration)
        expected = _weight_copy(pair, restoration)(input_ids=ids).logits
        torch.testing.assert_close(hybrid(input_ids=ids).logits, expected, rtol=0, atol=1e-6)
        new = [p for p in hybrid.parameters() if p.data_ptr() not in known]
        # Only the restored tensors are materialised, and their memory is what is reported.
        counted = sum(len(restored_names(decoder_layers(pair.pre)[k], mode)) for k in layers)
        assert len(new) == (counted if fraction < 1 else 0)
        assert materialised_bytes(pair, restoration) == sum(p.numel() * p.element_size() for p in new)
    whole = build_restored(pair, Restoration(layers, mode, 1.0))(input_ids=ids).logits
    half = build_restored(pair, Restoration(layers, mode, 0.5))(input_ids=ids).logits
    assert not torch.allclose(whole, half, atol=1e-5)  # the fraction matters


def test_lambda_slice_runs_from_post_to_the_restored_hybrid(tiny_pair):
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()[:3])
    restoration = interval_restoration(1, 2, "attention")
    points = lambda_slice(tiny_pair, encoded, restoration, lambdas=(0.0, 0.5, 1.0))
    _assert_naive(tiny_pair, encoded, restoration, points)
    assert points[0.5] != points[1.0]
    assert lambda_slice(tiny_pair, encoded, restoration, lambdas=(0.0, 0.5, 1.0)) == points  # cached


@pytest.mark.parametrize("family", FAMILIES)
def test_lambda_slice_points_equal_naive_forwards_for_every_family(tiny_paths, family):
    pair = _load(tiny_paths, family)
    encoded = encode_prompts(pair.tokenizer, default_prompts()[:2] + default_prompts()[20:21])
    restoration = interval_restoration(1, 2, "mlp")
    points = lambda_slice(pair, encoded, restoration, lambdas=(0.5,), use_cache=False)
    _assert_naive(pair, encoded, restoration, points)


def _assert_naive(pair, encoded, restoration, points) -> None:
    # All four numbers of each lambda point against plain forwards of the blended hybrid.
    for fraction, point in points.items():
        model = build_restored(pair, replace(restoration, fraction=fraction)) if fraction else pair.post
        naive = naive_scores(model, pair.tokenizer, encoded).mean(0)
        got = (point.quality, point.diversity, point.stop, point.strict_quality)
        assert all(abs(a - float(b)) < 1e-4 for a, b in zip(got, naive)), (fraction, got, naive)


# ---------------------------------------------------------------- cache and CLI record the mode


def test_modes_have_their_own_cache_context_and_share_the_references(tiny_pair):
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()[:3])
    contexts = {mode: context_id(tiny_pair, encoded, mode) for mode in ("layer", "attention", "mlp")}
    assert len(set(contexts.values())) == 3 and contexts["layer"] == context_id(tiny_pair, encoded)
    attention = complete(survey(tiny_pair, encoded, {(1, 2)}, mode="attention"))
    assert (
        attention.meta["restore"] == "attention" and attention.meta["cache_context"] == contexts["attention"]
    )
    naive = naive_interval_scores(tiny_pair, encoded, 1, 2, mode="attention").mean(0)
    assert abs(attention.intervals[(1, 2)].quality - float(naive[0])) < 1e-4
    stored = {mode: stored_landscape(tiny_pair, encoded, mode) for mode in ("layer", "attention", "mlp")}
    assert set(stored["attention"].intervals) == {(1, 2)}
    assert not stored["layer"].intervals and not stored["mlp"].intervals  # never another mode's results
    assert stored["layer"].post == stored["mlp"].post == attention.post  # mode-free results are shared


def test_cli_sweep_writes_the_mode_and_its_numbers(tiny_paths, tmp_path):
    from slr_core.cli import main

    pre, post = tiny_paths("gpt_neox")
    out = tmp_path / "mlp.csv"
    argv = ["sweep", "--pre", str(pre), "--post", str(post), "--device", "cpu", "--dtype", "float32"]
    assert main([*argv, "--restore", "mlp", "--intervals", "0-1,2-3", "--out", str(out)]) == 0
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["restore"] == "mlp" and "--restore mlp" in meta["command"]
    rows = {(r["start"], r["end"]): r for r in csv.DictReader(out.open()) if r["kind"] == "interval"}
    pair = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))
    encoded = encode_prompts(pair.tokenizer, default_prompts())
    naive = naive_interval_scores(pair, encoded, 2, 3, mode="mlp").mean(0)
    assert abs(float(rows[("2", "3")]["quality"]) - float(naive[0])) < 1e-4
    assert abs(float(rows[("2", "3")]["diversity"]) - float(naive[1])) < 1e-4
    assert cached_sweep.context_id(pair, encoded, "mlp") == meta["cache_context"]
