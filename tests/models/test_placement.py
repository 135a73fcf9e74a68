"""Pairs spread over devices: restored layers sit where the layers they replace sit, results unchanged."""

from __future__ import annotations

import pytest
import torch
from accelerate import dispatch_model

from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.naive import naive_interval_scores
from slr_core.engine.sweep import sweep_intervals
from slr_core.models.loading import load_pair
from slr_core.models.placement import (
    describe,
    layer_devices,
    mapped_device,
    misplaced_layers,
    post_placement,
    pre_placement,
)
from slr_core.models.settings import Settings
from slr_core.slr.hybrid import build_hybrid, restored_layers

INTERVALS = {(0, 0), (0, 3), (1, 2), (3, 3)}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _device_map(layer_devices: list, ends: tuple = ("cpu", "cpu")) -> dict:
    """A per-module map of the tiny Llama: embeddings, each layer, then norm, rotary table and head."""
    layers = {f"model.layers.{k}": device for k, device in enumerate(layer_devices)}
    tail = {"model.norm": ends[1], "model.rotary_emb": ends[1], "lm_head": ends[1]}
    return {"model.embed_tokens": ends[0], **layers, **tail}


def _pair(tiny_paths, **settings):
    pre, post = tiny_paths("llama")
    return load_pair(str(pre), str(post), Settings(dtype="float32", **settings))


def _ids(pair) -> torch.Tensor:
    return torch.randint(3, len(pair.tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))


def _hybrid_logits(pair, start, end, ids, device=None) -> torch.Tensor:
    ids = ids.to(device or pair.device)
    with torch.inference_mode():
        return build_hybrid(pair, start, end)(input_ids=ids, use_cache=False).logits.cpu()


def _assert_sweep_equals_naive(pair, atol=1e-4):
    encoded = encode_prompts(pair.tokenizer, default_prompts()[:6])
    for result in sweep_intervals(pair, encoded, INTERVALS, batch_tokens=200):
        naive = naive_interval_scores(pair, encoded, result.start, result.end)
        assert torch.allclose(result.per_prompt, naive, atol=atol, rtol=0), (result.start, result.end)


def _runs_on(layer) -> torch.device:
    # Where a layer computes: accelerate's hook knows (its weights may wait offloaded), else its weights.
    hook = getattr(layer, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    return torch.device(device if device is not None else next(layer.parameters()).device)


def _assert_restored_layers_in_place(pair):
    pre_layers, post_layers = list(pair.pre.model.layers), list(pair.post.model.layers)
    assert layer_devices(pair.pre) == layer_devices(pair.post)
    for start, end in INTERVALS:
        layers = restored_layers(pair, start, end)
        for k in range(start, end + 1):
            assert layers[k] is pre_layers[k]  # really the pre-trained module ...
            assert _runs_on(layers[k]) == _runs_on(post_layers[k]), (start, end, k)  # ... where k runs


# ---------------------------------------------------------------- pure placement rules


def test_mapped_device_takes_the_longest_matching_key():
    device_map = {"model": 1, "model.layers.1": "cpu", "lm_head": 0}
    assert mapped_device(device_map, "model.layers.1") == "cpu"
    assert mapped_device(device_map, "model.layers.10") == 1  # 'model.layers.1' is no ancestor
    assert mapped_device({"": 0}, "model.layers.3") == 0
    assert mapped_device({"lm_head": 0}, "model.layers.3") is None


def test_post_model_leaves_room_for_its_partner():
    assert post_placement(Settings(device="cpu")) == {}
    auto = post_placement(Settings(device="cpu", device_map="auto"))
    assert auto["device_map"] == "auto" and auto["max_memory"]["cpu"] > 0
    explicit = _device_map(["cpu"] * 4)
    assert post_placement(Settings(device="cpu", device_map=explicit)) == {"device_map": explicit}


# ---------------------------------------------------------------- loading through load_pair


def test_explicit_map_places_pre_layers_where_post_layers_are(tiny_paths):
    settings = Settings(device="cpu", dtype="float32", device_map=_device_map(["cpu"] * 4))
    pair = _pair(tiny_paths, device="cpu", device_map=settings.device_map)
    # One device only: transformers records no map, so the pre model follows the post model's device.
    assert pre_placement(pair.post, settings) == {"device_map": {"": "cpu"}}
    assert pre_placement(pair.post, Settings(device="cpu")) == {}  # no map asked for: the plain path
    assert misplaced_layers(pair.pre, pair.post) == [] and layer_devices(pair.pre) == ["cpu"] * 4
    _assert_restored_layers_in_place(pair)
    _assert_sweep_equals_naive(pair)


def test_auto_map_on_the_cpu_loads_a_working_pair(tiny_paths, tiny_pair):
    pair = _pair(tiny_paths, device="cpu", device_map="auto")
    assert misplaced_layers(pair.pre, pair.post) == []
    ids = _ids(pair)
    torch.testing.assert_close(
        _hybrid_logits(pair, 1, 2, ids), _hybrid_logits(tiny_pair, 1, 2, ids), rtol=0, atol=1e-6
    )


# ---------------------------------------------------------------- accelerate hooks


def _dispatched(tiny_paths, device_map: dict, **options):
    """A CPU pair whose two models carry accelerate's hooks, as a multi-device load leaves them."""
    pair = _pair(tiny_paths, device="cpu")
    for model in (pair.post, pair.pre):
        dispatch_model(model, device_map, **options)
    return pair


def test_hybrid_of_hooked_models_runs_its_own_layers(tiny_paths, tiny_pair):
    # accelerate binds a hooked module's forward to that module; a copied model must not run the original.
    pair = _dispatched(tiny_paths, _device_map(["cpu"] * 4), force_hooks=True)
    assert hasattr(pair.post, "_hf_hook")
    _assert_restored_layers_in_place(pair)
    ids = _ids(pair)
    for start, end in INTERVALS:
        expected = _hybrid_logits(tiny_pair, start, end, ids)
        torch.testing.assert_close(_hybrid_logits(pair, start, end, ids), expected, rtol=0, atol=1e-6)
    _assert_sweep_equals_naive(pair)


def test_misplaced_layers_are_reported(tiny_paths, tmp_path):
    pair = _pair(tiny_paths, device="cpu")
    dispatch_model(pair.post, _device_map(["cpu"] * 4), force_hooks=True)
    dispatch_model(pair.pre, _device_map(["cpu", "disk", "cpu", "cpu"]), offload_dir=str(tmp_path))
    assert misplaced_layers(pair.pre, pair.post) == [1]
    assert layer_devices(pair.pre) == ["cpu", "disk", "cpu", "cpu"]


def test_offloading_the_whole_stack_to_disk_keeps_each_layer_its_weights(tiny_paths, tiny_pair, tmp_path):
    # Offload hooks sit on the leaves and read their own model's weights, so restored layers stay pre.
    pair = _pair(tiny_paths, device="cpu")
    for side, model in (("post", pair.post), ("pre", pair.pre)):
        dispatch_model(model, {"model": "disk", "lm_head": "cpu"}, offload_dir=str(tmp_path / side))
    assert layer_devices(pair.post) == ["disk"] * 4 and describe(pair.pre) == "disk x4"
    ids = _ids(pair)
    for start, end in INTERVALS:
        expected = _hybrid_logits(tiny_pair, start, end, ids)
        got = _hybrid_logits(pair, start, end, ids, device="cpu")  # pair.device reads 'meta' here
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- on a GPU


@CUDA
def test_gpu_map_places_pre_layers_where_post_layers_are(tiny_paths, tiny_pair):
    # transformers keeps 'cpu' modules of a GPU map offloaded (run on the GPU); the pre model must match.
    device_map = _device_map([0, 0, "cpu", "cpu"], ends=(0, 0))
    pair = _pair(tiny_paths, device="cuda", device_map=device_map)
    assert pair.pre.hf_device_map == pair.post.hf_device_map
    assert layer_devices(pair.post) == ["cuda:0", "cuda:0", "cpu", "cpu"]
    _assert_restored_layers_in_place(pair)
    ids = _ids(pair)
    for start, end in INTERVALS:
        expected = _hybrid_logits(tiny_pair, start, end, ids)
        torch.testing.assert_close(_hybrid_logits(pair, start, end, ids), expected, rtol=0, atol=1e-4)
    _assert_sweep_equals_naive(pair)


@CUDA
def test_sweep_moves_hidden_states_between_devices(tiny_paths, tiny_pair):
    # main_device='cpu' makes accelerate run the 'cpu' layers on the CPU: hidden states really cross.
    device_map = _device_map(["cpu", 0, "cpu", 0], ends=("cpu", 0))
    pair = _dispatched(tiny_paths, device_map, main_device="cpu")
    assert [next(layer.parameters()).device.type for layer in pair.pre.model.layers] == ["cpu", "cuda"] * 2
    _assert_restored_layers_in_place(pair)
    ids = _ids(pair)
    for start, end in INTERVALS:
        expected = _hybrid_logits(tiny_pair, start, end, ids)
        torch.testing.assert_close(_hybrid_logits(pair, start, end, ids), expected, rtol=0, atol=1e-4)
    _assert_sweep_equals_naive(pair)


# ---------------------------------------------------------------- --device-map values


def test_a_map_file_is_read_at_load_and_named_by_its_content(tmp_path):
    import json

    from slr_core.models.device_maps import map_identity, resolved_map

    device_map = _device_map(["cpu"] * 4)
    path = tmp_path / "map.json"
    path.write_text(json.dumps(device_map))
    assert post_placement(Settings(device="cpu", device_map=str(path))) == {"device_map": device_map}
    assert resolved_map("balanced") == "balanced" and resolved_map(None) is None
    assert map_identity(str(path)) == map_identity(dict(reversed(device_map.items())))
    assert map_identity(str(path)).startswith("map:") and map_identity("auto") == "auto"
    assert map_identity(None) == ""
    hash(Settings(device="cpu", device_map=str(path)))  # the app keys pairs by their settings
