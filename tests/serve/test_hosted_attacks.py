"""Hosted mode, tried as a hostile visitor would (issue 21): each item with the test that once failed."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from slr_core.errors import SourceError
from slr_core.models import loading as models
from slr_core.models.hosting import HostedModeError, HostedPolicy
from slr_core.models.settings import Settings

CPU = Settings(device="cpu")


def hosted(**rules) -> HostedPolicy:
    """A hosted policy letting visitors pick visitor-org/* (and the exact id operator-org/trusted)."""
    allowed = rules.pop("allowed", ("visitor-org/*", "operator-org/trusted"))
    return HostedPolicy(hosted=True, allowed=allowed, **rules)


# ---------------------------------------------------------------- item 2: the operator's token


def test_a_visitors_pair_loads_from_a_snapshot_without_the_operators_token(fake_hub, tiny_paths, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_operator_secret")
    pre, post = tiny_paths("llama")
    fake_hub.add("visitor-org/base", pre)
    commit = fake_hub.add("visitor-org/instruct", post)
    pair = models.load_pair("visitor-org/base", "visitor-org/instruct", CPU, hosted(max_params=10**9))
    assert pair.post_fingerprint == f"hub:visitor-org/instruct@{commit}"
    assert len(fake_hub.requests) > 5 and fake_hub.authorized() == []
    # The recorder sees a token where one is meant to go: the operator's exact entry uses it.
    fake_hub.add("operator-org/trusted", post)
    fake_hub.requests.clear()
    models.load_pair("visitor-org/base", "operator-org/trusted", CPU, hosted())
    assert {r.authorization for r in fake_hub.authorized()} == {"Bearer hf_operator_secret"}


# ---------------------------------------------------------------- item 3: the size cap


def _copy_without_weights(folder, target):
    """The model folder's config and tokenizer files, without its weights."""
    target.mkdir()
    for path in folder.iterdir():
        if path.suffix != ".safetensors" and path.is_file():
            shutil.copy(path, target / path.name)
    return target


def test_a_config_larger_than_its_safetensors_is_refused_by_its_config(fake_hub, tiny_paths, tmp_path):
    pre, post = tiny_paths("llama")
    big = _copy_without_weights(post, tmp_path / "big")
    config = json.loads((big / "config.json").read_text())
    config.update(hidden_size=256, intermediate_size=1024, num_hidden_layers=8)
    (big / "config.json").write_text(json.dumps(config))
    save_file({"model.norm.weight": torch.ones(1024)}, str(big / "model.safetensors"))  # 1,024 parameters
    fake_hub.add("visitor-org/base", pre)
    fake_hub.add("visitor-org/big", big)
    policy = hosted(max_params=200_000)
    with pytest.raises(
        HostedModeError, match=r"'visitor-org/big' has \d+\.?\d* M parameters \(by its config.json\)"
    ):
        models.load_pair("visitor-org/base", "visitor-org/big", CPU, policy)
    # Pinned first: the size check's requests name the commit, not a branch.
    commit = fake_hub.commit("visitor-org/big")
    counted = [r.path for r in fake_hub.requests if "/resolve/" in r.path and "visitor-org/big" in r.path]
    assert counted and all(f"/resolve/{commit}/" in path for path in counted)


def test_a_checkpoint_missing_tensors_is_refused_never_filled_at_random(fake_hub, tiny_paths, tmp_path):
    pre, post = tiny_paths("llama")
    partial = _copy_without_weights(post, tmp_path / "partial")
    tensors = {}
    for file in post.glob("*.safetensors"):
        tensors.update(load_file(str(file)))
    dropped = sorted(name for name in tensors if "layers.2.mlp" in name)
    save_file({k: v for k, v in tensors.items() if k not in dropped}, str(partial / "model.safetensors"))
    fake_hub.add("visitor-org/base", pre)
    fake_hub.add("visitor-org/partial", partial)
    with pytest.raises(SourceError, match=r"do not cover the model.*3 tensors are missing.*never fills them"):
        models.load_pair("visitor-org/base", "visitor-org/partial", CPU, hosted(max_params=10**9))


# ---------------------------------------------------------------- item 12: a local folder never shadows


def test_a_local_folder_named_like_an_allowed_id_is_not_loaded(fake_hub, tiny_paths, tmp_path, monkeypatch):
    pre, post = tiny_paths("llama")
    other_pre, other_post = tiny_paths("qwen2")
    fake_hub.add("visitor-org/base", pre)
    commit = fake_hub.add("visitor-org/instruct", post)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(other_post, tmp_path / "visitor-org" / "instruct")  # a folder beside the app
    shutil.copytree(other_pre, tmp_path / "visitor-org" / "base")
    pair = models.load_pair("visitor-org/base", "visitor-org/instruct", CPU, hosted())
    assert type(pair.post).__name__ == "LlamaForCausalLM"  # the Hub repo's model, not the folder's Qwen2
    assert pair.post_fingerprint == f"hub:visitor-org/instruct@{commit}"


# ---------------------------------------------------------------- item 13: revisions


@pytest.mark.parametrize(
    ("allowed", "spec"),
    [
        ("org/*@*", "org/x@../v1"),
        ("org/*@*", "org/x@v1/../main"),
        ("org/*@*", "org/x@refs//pr"),
        ("org/*@*", "org/x@./main"),
        ("org/*@v1", "org/x@refs/pr/7@v1"),
        ("org/*@*", "org/x@main@v1"),
        ("org/*", "org/x@main"),
    ],
)
def test_a_revision_is_checked_apart_from_the_name(allowed, spec):
    with pytest.raises(HostedModeError):
        hosted(allowed=(allowed,)).source(spec)


@pytest.mark.parametrize(
    ("allowed", "spec"), [("org/*@*", "org/x@refs/pr/7"), ("org/*@v1", "org/x@v1"), ("org/*", "org/x")]
)
def test_a_good_revision_is_allowed_by_its_entry(allowed, spec):
    source = hosted(allowed=(allowed,)).source(spec)
    assert source.kind == "hub" and source.hub_only and source.anonymous


# ---------------------------------------------------------------- item 10: exports


def test_a_fresh_export_is_never_evicted_for_room_and_names_cannot_be_guessed(tiny_pair, tmp_path):
    import os
    import time

    from slr_core.export.writer import ExportError, export_bytes, export_name, prune_exports, publish_archive
    from slr_core.slr.hybrid import interval_restoration

    root, estimate = tmp_path / "exports", export_bytes(tiny_pair)
    mine = publish_archive(tiny_pair, interval_restoration(1, 2), root, policy=HostedPolicy(hosted=True))
    # Room for one more export, but not beside mine.
    size = mine.stat().st_size
    policy = HostedPolicy(hosted=True, export_quota_bytes=estimate + size // 2)
    assert mine.name != f"{export_name(tiny_pair, (1, 2))}.zip"  # public fingerprints alone do not name it
    with pytest.raises(ExportError, match="full of recent exports.*at least 30 minutes"):
        publish_archive(tiny_pair, interval_restoration(1, 2), root, policy=policy)  # another visitor's
    assert sorted(root.iterdir()) == [mine]  # mine is still there, and nothing half-written stayed
    old = time.time() - 31 * 60
    os.utime(mine, (old, old))
    theirs = publish_archive(tiny_pair, interval_restoration(1, 2), root, policy=policy)
    assert sorted(root.iterdir()) == [theirs] and theirs.name != mine.name  # after 30 minutes it may go
    assert prune_exports(root, policy, incoming=size // 4) == []


# ---------------------------------------------------------------- item 4: visitors evicting each other


def test_the_registry_keys_on_resolved_sources_and_refuses_the_same_model_twice(tiny_paths, monkeypatch):
    from slr_core.errors import InputError
    from slr_core.serve.registry import PairRegistry

    pre, post = tiny_paths("llama")
    monkeypatch.chdir(pre.parent)
    registry = PairRegistry(capacity=2)
    entry = registry.get((str(pre), str(post), CPU))
    for spelling in ((f"./{pre.name}", f" {post} ", CPU), (f"{pre.name}/", f"{post}/.", CPU)):
        assert registry.get(spelling, load=False) is entry  # one pair, however its sources are spelt
    with pytest.raises(InputError, match="are the same"):
        registry.get((str(pre), f"./{pre.name}", CPU))
    assert len(registry._entries) == 1


def test_a_pair_in_use_is_never_evicted_and_loads_reserve_their_room_first(tiny_paths):
    import threading

    from slr_core.serve.registry import PairEvicted, PairRegistry, ServerBusy

    keys = [(*map(str, tiny_paths(family)), CPU) for family in ("llama", "qwen2", "mistral")]
    registry = PairRegistry(capacity=2)
    registry.get(keys[0])
    with registry.using(keys[0]) as entry:  # another visitor's request in flight
        registry.get(keys[1])
        registry.get(keys[2])  # room is made from the idle pair, not from the one in use
        assert keys[0] in registry and keys[1] not in registry and keys[2] in registry
        with registry.using(keys[2]):
            with pytest.raises(ServerBusy, match="in use by other visitors"):
                registry.get(keys[1])
        assert registry.get(keys[0], load=False) is entry
    # Loads at once never hold more pairs than the count: each reserves its slot before loading.
    registry = PairRegistry(capacity=2)
    most, errors = [], []

    def load(key):
        try:
            registry.get(key)
        except ServerBusy as error:
            errors.append(error)

    def watch():
        while not stop.is_set():
            most.append(len(registry._entries) + len(registry._reserved))

    stop = threading.Event()
    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=load, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    watcher.join()
    assert max(most) <= 2 and len(registry._entries) <= 2
    with pytest.raises(PairEvicted):
        with registry.using((*map(str, tiny_paths("gemma2")), CPU)):
            pass


def test_the_memory_budget_is_reserved_before_any_weights_load(tiny_paths, monkeypatch):
    from slr_core.serve.registry import PairRegistry, ServerBusy, pair_bytes

    first, second = [(*map(str, tiny_paths(family)), CPU) for family in ("llama", "qwen2")]
    registry = PairRegistry(capacity=4)
    size = pair_bytes(registry.get(first).pair)
    registry.budget_bytes = size + size // 2  # room for one pair and a half
    loaded = []
    real_load_model = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loaded.append(a[0]) or real_load_model(*a, **k))
    with registry.using(first):
        with pytest.raises(ServerBusy):
            registry.get(second)
    assert loaded == [] and first in registry  # refused on its estimate, before any weights loaded
    registry.get(second)  # once the first pair is idle, it makes room
    assert first not in registry and len(loaded) == 2


# ---------------------------------------------------------------- item 5: admission into the queue


def test_admission_bounds_each_visitor_and_a_second_sweep_replaces_the_first():
    from slr_core.serve.admission import Limits, Waiting, client_address, decide

    limits = Limits(heavy_per_session=2, heavy_per_client=3, heavy_total=4, light_per_session=2)
    sweep = Waiting("e1", "s1", "1.1.1.1", "sweep")
    refused, replaced = decide([sweep], Waiting("", "s1", "1.1.1.1", "sweep"), limits)
    assert refused is None and replaced == ["e1"]  # the newer sweep is what the page shows
    two = [Waiting("a", "s1", "1.1.1.1", "sample"), Waiting("b", "s1", "1.1.1.1", "evaluate")]
    assert "at most 2 per visitor" in decide(two, Waiting("", "s1", "1.1.1.1", "sample"), limits)[0]
    three = [Waiting(f"c{k}", f"s{k}", "1.1.1.1", "sample") for k in range(3)]
    assert "Your address" in decide(three, Waiting("", "s9", "1.1.1.1", "sample"), limits)[0]
    full = [Waiting(f"d{k}", f"s{k}", f"2.2.2.{k}", "sweep") for k in range(4)]
    assert "server is busy" in decide(full, Waiting("", "new", "3.3.3.3", "sample"), limits)[0]
    # A new visitor's page load and redraws are never refused because others filled the queue.
    assert decide(full + three, Waiting("", "new", "3.3.3.3", "start"), limits) == (None, [])
    assert decide(full + three, Waiting("", "new", "3.3.3.3", "view"), limits) == (None, [])
    views = [Waiting(f"v{k}", "s1", "1.1.1.1", "view") for k in range(2)]
    assert "requests waiting" in decide(views, Waiting("", "s1", "1.1.1.1", "view"), limits)[0]
    assert client_address({"x-forwarded-for": "6.6.6.6, 5.5.5.5"}, "10.0.0.1") == "5.5.5.5"
    assert client_address({}, "10.0.0.1") == "10.0.0.1"
