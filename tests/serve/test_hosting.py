"""Hosted mode's rules in slr_core: sources, size cap, Hub token, memory, settings; and cache integrity."""

from __future__ import annotations

import dataclasses
import re
import shutil
import sqlite3
import warnings
from pathlib import Path
from types import SimpleNamespace

import diskcache
import httpx2
import pytest
import torch
from huggingface_hub import errors as hub_errors

from slr_core import cache
from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.cached_sweep import complete, context_id, survey
from slr_core.errors import InputError, SourceError
from slr_core.inputs import prompt
from slr_core.models import hosting, sources
from slr_core.models import loading as models
from slr_core.models.hosting import SETTINGS, HostedModeError, HostedPolicy
from slr_core.models.settings import Settings
from slr_core.serve.registry import LoadedPair, PairEvicted, PairRegistry, pair_bytes

ROOT = Path(__file__).resolve().parents[2]
HOSTED = HostedPolicy.from_env({"SLR_HOSTED": "1", "SLR_ALLOWED_SOURCES": "Qwen/*, me/exact, gated-org/*"})


def _refusal(spec: str) -> str:
    with pytest.raises(HostedModeError) as raised:
        HOSTED.source(spec)
    return str(raised.value)


# ---------------------------------------------------------------- sources


def test_the_local_default_stays_open(tiny_paths):
    policy = HostedPolicy.from_env({})
    assert not policy.hosted and policy.max_params is None and policy.export_quota_bytes is None
    pre, _ = tiny_paths("llama")
    assert policy.source(str(pre)).kind == "folder"  # any source, as before


def test_hosted_mode_refuses_a_local_folder_without_telling_whether_it_exists(tiny_paths, tmp_path):
    pre, _ = tiny_paths("llama")
    existing, missing = _refusal(str(pre)), _refusal(str(tmp_path / "nothing-here"))
    assert "Hosted mode does not load local files" in existing
    # The same words for a real model folder and for nothing at all: only the echoed path differs.
    assert existing.replace(str(pre), "P") == missing.replace(str(tmp_path / "nothing-here"), "P")


@pytest.mark.parametrize("spec", ["/etc", "/etc/passwd", "~/models/x", "./model", "..\\x", "org/.."])
def test_hosted_mode_refuses_system_and_relative_paths(spec):
    assert "Hosted mode does not load local files" in _refusal(spec)


@pytest.mark.parametrize("spec", ["model.gguf", "Qwen/model.GGUF", "/data/x.gguf"])
def test_hosted_mode_refuses_gguf_paths_even_where_a_glob_would_match(spec):
    assert ".gguf" in _refusal(spec)


def test_hosted_mode_refuses_an_unlisted_hub_id_and_names_the_choices():
    message = _refusal("someone/big-model")
    assert "Hosted mode loads only the presets" in message and "'someone/big-model'" in message
    assert "Qwen/*" in message


def test_an_empty_or_unknown_demo_source_is_refused_in_its_own_words():
    with pytest.raises(SourceError, match="A model source is empty"):
        HOSTED.source("  ")
    assert "not among them" in _refusal("demo:other")


def test_presets_globs_and_exact_ids_are_allowed_with_the_right_token(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Qwen" / "Qwen3-0.6B").mkdir(parents=True)  # a same-named local folder is never loaded
    (tmp_path / "Qwen" / "Qwen3-0.6B" / "config.json").write_text("{}")
    globbed = HOSTED.source("Qwen/Qwen3-0.6B")
    assert (globbed.kind, globbed.location, globbed.anonymous, globbed.token) == (
        "hub",
        "Qwen/Qwen3-0.6B",
        True,
        False,
    )
    preset = HOSTED.source("Qwen/Qwen2.5-0.5B-Instruct")  # a preset: the operator chose it
    assert preset.kind == "hub" and not preset.anonymous and preset.token is None
    assert not HOSTED.source("me/exact").anonymous
    assert HOSTED.source("demo:post").kind == "demo"


def test_a_revision_is_allowed_only_by_name():
    assert "not among them" in _refusal("Qwen/Qwen3-0.6B@refs/pr/1")  # "Qwen/*" does not reach revisions
    pinned = HostedPolicy(hosted=True, allowed=("Qwen/Qwen3-0.6B@v1*",))
    assert pinned.source("Qwen/Qwen3-0.6B@v1.0").revision == "v1.0"


def test_the_operators_own_pair_loads_in_hosted_mode(tiny_paths):
    pre, post = (str(path) for path in tiny_paths("llama"))
    policy = HostedPolicy.from_env({"SLR_HOSTED": "1", "SLR_PRE": pre, "SLR_POST": post})
    assert policy.source(pre).kind == "folder" and policy.source(post).kind == "folder"


def test_a_refused_source_loads_nothing(tiny_paths, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("nothing may load for a refused source")

    monkeypatch.setattr(models, "load_model", no_load)
    pre, post = (str(path) for path in tiny_paths("llama"))
    with pytest.raises(HostedModeError, match="Hosted mode"):
        models.load_pair(pre, post, Settings(device="cpu"), HOSTED)


# ---------------------------------------------------------------- size cap and Hub token


def _metadata(count: int, calls: list):
    def get_safetensors_metadata(repo_id, revision=None, token=None, **kwargs):
        calls.append({"repo": repo_id, "revision": revision, "token": token})
        return SimpleNamespace(parameter_count={"BF16": count - 1000, "F32": 1000})

    return get_safetensors_metadata


def _offline_hub(monkeypatch) -> None:
    monkeypatch.setattr(models, "check_reachable", lambda source: None)

    def no_download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded before the size check")

    monkeypatch.setattr(sources, "hub_commit", lambda source: "c" * 40)  # pinned first: metadata only
    monkeypatch.setattr(sources, "snapshot", no_download)
    monkeypatch.setattr(models, "load_model", no_download)


def test_an_oversize_model_is_refused_before_any_download_with_its_size(monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", _metadata(7_615_616_512, calls))
    _offline_hub(monkeypatch)
    with pytest.raises(HostedModeError) as raised:
        models.load_pair("Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct", Settings(device="cpu"), HOSTED)
    message = str(raised.value)
    assert "7.62 B parameters" in message and "at most 2.00 B" in message and "Hosted mode" in message
    assert (
        calls[0]["repo"] == "Qwen/Qwen2.5-7B-Instruct" and calls[0]["token"] is None
    )  # presets: the operator's
    small = HostedPolicy(hosted=True, max_params=10**9)
    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", _metadata(494_032_768, calls))
    # The config's own count (tests/serve/test_hosted_attacks.py, on a fake Hub) is smaller here.
    monkeypatch.setattr(hosting, "config_parameter_count", lambda source: 494_032_768 - 1000)
    assert small.check_size(small.source("Qwen/Qwen2.5-0.5B")) == 494_032_768


def test_a_model_without_safetensors_cannot_pass_the_size_cap(monkeypatch):
    import huggingface_hub

    def not_safetensors(*args, **kwargs):
        raise hub_errors.NotASafetensorsRepoError("no model.safetensors")

    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", not_safetensors)
    with pytest.raises(HostedModeError, match="no safetensors weights"):
        HOSTED.check_size(HOSTED.source("Qwen/Qwen3-0.6B"))


def _gated(url: str) -> hub_errors.GatedRepoError:
    response = httpx2.Response(401, request=httpx2.Request("GET", url))
    return hub_errors.GatedRepoError("Access to this repo is restricted", response=response)


def test_a_visitors_gated_repo_is_asked_for_without_the_operators_token(monkeypatch):
    import huggingface_hub

    calls = []

    def gated_metadata(repo_id, revision=None, token=None, **kwargs):
        calls.append(token)
        raise _gated(f"https://huggingface.co/{repo_id}")

    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", gated_metadata)
    _offline_hub(monkeypatch)
    with pytest.raises(SourceError) as raised:
        models.load_pair("gated-org/base", "gated-org/instruct", Settings(device="cpu"), HOSTED)
    assert calls == [False]  # token=False: huggingface_hub sends no token at all
    assert "gated or private" in str(raised.value) and "without the server's Hub token" in str(raised.value)


# Every Hub request for a visitor's repo going without a token is checked on a fake Hub that records
# headers: tests/serve/test_hosted_attacks.py.


# ---------------------------------------------------------------- settings, inputs, memory


def test_hosted_defaults_and_bad_values():
    policy = HostedPolicy.from_env({"SLR_HOSTED": "1"})
    assert policy.max_params == 2 * 10**9 and policy.queue_max_size == 16 and policy.prompt_max_chars == 2000
    assert policy.export_quota_bytes == 20 * 2**30 and policy.export_ttl_seconds == 24 * 3600
    assert policy.pair_memory_bytes == 10 * 2**30 and policy.allowed == ()
    explicit = HostedPolicy.from_env({"SLR_MAX_PARAMS": "1.5e9", "SLR_QUEUE_MAX": "none"})
    assert not explicit.hosted and explicit.max_params == 1_500_000_000 and explicit.queue_max_size is None
    for name, value in [("SLR_HOSTED", "maybe"), ("SLR_MAX_PARAMS", "-3"), ("SLR_EXPORT_TTL_HOURS", "soon")]:
        with pytest.raises(InputError, match=name):
            HostedPolicy.from_env({name: value})


def test_every_setting_is_in_the_docs_with_its_defaults_and_the_dockerfile_turns_hosting_on():
    docs = (ROOT / "docs" / "hosting.md").read_text()
    for setting in SETTINGS:
        row = next((line for line in docs.splitlines() if line.startswith(f"| `{setting.variable}`")), None)
        assert row is not None, setting.variable
        assert setting.open_default in row and setting.hosted_default in row, row
    for kind, limit in hosting.CONCURRENCY.items():
        assert f"`{kind}` {limit}" in docs
    assert re.search(r"^\s*SLR_HOSTED=1", (ROOT / "Dockerfile").read_text(), re.MULTILINE)


def test_the_prompt_cap():
    assert prompt("  Tell me a joke. ", 20) == "Tell me a joke."
    with pytest.raises(InputError, match="has 21 characters; this server takes at most 20"):
        prompt("x" * 21, 20)
    with pytest.raises(InputError, match="Write a prompt first"):
        prompt("   ", None)
    assert prompt("x" * 10_000, None) == "x" * 10_000  # open: no cap


def _fake_entry(megabytes: int) -> LoadedPair:
    side = int((megabytes * 2**20 / 4) ** 0.5)
    pair = SimpleNamespace(
        pre=torch.nn.Linear(side, side, bias=False), post=torch.nn.Linear(side, side, bias=False)
    )
    return LoadedPair(pair, None, [])


def test_pairs_past_the_memory_budget_are_evicted_and_a_stale_click_is_told_to_load_again(monkeypatch):
    from slr_core.serve import registry as registry_module

    loads = []

    def load_entry(pre, post, settings, policy=None, reserve=None):
        loads.append(pre)
        return _fake_entry(4)

    monkeypatch.setattr(registry_module, "load_entry", load_entry)
    first, second = ("a", "b", None), ("c", "d", None)
    assert pair_bytes(_fake_entry(4).pair) == pytest.approx(8 * 2**20, rel=0.01)  # both models counted
    registry = PairRegistry.from_policy(HostedPolicy(max_pairs=4, pair_memory_bytes=12 * 2**20))
    registry.get(first)
    registry.get(second)  # 16 MiB > 12 MiB: the older pair goes, though the count (4) has room
    assert first not in registry and second in registry and registry.loaded_bytes() <= 12 * 2**20
    with pytest.raises(PairEvicted, match="press Load pair to load it again"):
        registry.get(first, load=False)
    assert loads == ["a", "c"]  # the stale click loaded nothing
    assert registry.get(first) is not None and loads == ["a", "c", "a"]  # the Load button does


# ---------------------------------------------------------------- cache integrity


def _encoded(pair, count=4):
    return encode_prompts(pair.tokenizer, default_prompts()[:count])


def test_the_cache_context_changes_with_dtype_attention_and_the_valid_token_ids(
    tiny_paths, tiny_pair, monkeypatch
):
    encoded = _encoded(tiny_pair)
    base = context_id(tiny_pair, encoded)
    pre, post = (str(path) for path in tiny_paths("llama"))
    half = models.load_pair(pre, post, Settings(device="cpu", dtype="bfloat16"))
    assert context_id(half, _encoded(half)) != base
    # One answer token fewer: the same prompts and characters (same digest), other numbers.
    fewer = dataclasses.replace(encoded, token_ids=[encoded.token_ids[0][:-1], *encoded.token_ids[1:]])
    assert fewer.digest == encoded.digest and context_id(tiny_pair, fewer) != base
    monkeypatch.setattr(tiny_pair.post.config, "_attn_implementation", "other", raising=False)
    monkeypatch.setattr(tiny_pair.pre.config, "_attn_implementation", "other", raising=False)
    assert tiny_pair.attention == "other" and context_id(tiny_pair, encoded) != base


@pytest.fixture
def copied_library(tmp_path, monkeypatch):
    """cache.py pointed at a copy of slr_core, so a test may edit any module; the real hash comes back."""
    shutil.copytree(ROOT / "slr_core", tmp_path / "slr_core", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "__file__", str(tmp_path / "slr_core" / "cache.py"))
    cache.code_version.cache_clear()
    cache.runtime_id.cache_clear()
    original = cache.code_version()
    yield tmp_path / "slr_core"
    monkeypatch.undo()
    cache.code_version.cache_clear()
    cache.runtime_id.cache_clear()
    assert cache.code_version() == original  # the real files give the real hash back


def test_the_result_key_changes_with_the_engine_code_not_its_comments(copied_library):
    original, key = cache.code_version(), cache.result_key("ctx", "post")
    sweep = copied_library / "engine" / "sweep.py"
    sweep.write_text(sweep.read_text().replace('"""', '"""Reworded. ', 1) + "\n# a comment\n")
    cache.code_version.cache_clear()
    assert cache.code_version() == original  # a docstring or a comment changes no number
    sweep.write_text(sweep.read_text() + "\nEXTRA = 1\n")
    cache.code_version.cache_clear()
    cache.runtime_id.cache_clear()
    assert cache.code_version() != original and cache.result_key("ctx", "post") != key


def test_the_code_hash_covers_every_module_the_engine_imports(copied_library):
    engine = cache.imported_modules(cache.ENGINE_ROOTS)
    # The modules that decide what a partial restoration restores and how results are cached, which a
    # hand-kept list of files once missed (hosted-mode issue, item 9), are found by walking the imports.
    for name in ("architectures", "placement", "loading"):
        assert f"slr_core.models.{name}" in engine
    for name in ("cached_sweep", "lambda_slice", "sweep", "stack", "prefix", "capture"):
        assert f"slr_core.engine.{name}" in engine
    assert "slr_core.slr.intervals" in engine and "slr_core.crc.branches" in engine
    assert not any(name.startswith(("slr_core.serve", "slr_core.report")) for name in engine)
    for name in engine:
        before = cache.code_version()
        path = cache.module_path(name)
        path.write_text(path.read_text() + "\nEDITED_BY_TEST = 1\n")
        cache.code_version.cache_clear()
        assert cache.code_version() != before, name


def test_the_evaluation_key_follows_its_own_code(copied_library):
    from slr_core.downstream.evaluation import EVAL_ROOTS

    evaluation = cache.imported_modules(EVAL_ROOTS)
    assert {"slr_core.downstream.qa", "slr_core.downstream.writing", "slr_core.downstream.sampling"} <= set(
        evaluation
    )
    before = cache.code_version(EVAL_ROOTS)
    scoring = copied_library / "downstream" / "qa.py"
    scoring.write_text(scoring.read_text() + "\nEDITED_BY_TEST = 1\n")
    cache.code_version.cache_clear()
    assert cache.code_version(EVAL_ROOTS) != before


def test_a_damaged_cache_database_is_moved_aside_with_a_warning_and_rebuilt():
    values = {name: 0.5 for name in cache.RESULT_METRICS}
    assert cache.put_result("v/ctx/post", values)
    folder = cache.cache_root() / "results"
    (folder / "cache.db").write_bytes(b"this is not a database" * 100)
    with pytest.warns(RuntimeWarning, match="moved aside"):
        assert cache.get_result("v/ctx/post") is None  # unreadable: recomputed, never trusted
    assert cache.put_result("v/ctx/post", values) and cache.get_result("v/ctx/post")["quality"] == 0.5
    damaged = [p for p in folder.parent.iterdir() if p.name.startswith("results.damaged-")]
    assert len(damaged) == 1 and (damaged[0] / "cache.db").read_bytes().startswith(b"this is not")
    status = cache.keeping()
    assert status.kept and status.moved_to == damaged[0] and "moved aside" in status.note()


def test_an_unwritable_cache_is_reported_not_claimed_and_the_sweep_goes_on(tiny_pair, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(diskcache.Cache, "set", read_only)
    with pytest.warns(RuntimeWarning, match="not being kept"):
        landscape = complete(survey(tiny_pair, _encoded(tiny_pair), intervals={(0, 0)}))
    assert landscape.post is not None and (0, 0) in landscape.intervals
    status = cache.keeping()
    assert not status.kept and "readonly" in status.problem and "not being kept" in status.note()
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.probe().kept  # writable again: said so


# ---------------------------------------------------------------- the shipped demo landscapes


@pytest.mark.real
def test_the_shipped_landscapes_match_the_demo_pairs_contexts_and_numbers(demo_pair):
    from slr_core.engine.cached_sweep import shipped_points
    from slr_core.engine.sweep import sweep_intervals

    encoded = encode_prompts(demo_pair.tokenizer, default_prompts())
    for mode, cell in [("attention", (13, 17)), ("mlp", (12, 14))]:
        shipped = shipped_points(context_id(demo_pair, encoded, mode))
        assert len([name for name in shipped if name.startswith("interval/")]) == 171, mode
        (result,) = list(sweep_intervals(demo_pair, encoded, {cell}, mode=mode))
        quality, diversity, stop, strict = result.per_prompt.mean(dim=0).tolist()[:4]
        point = shipped[f"interval/{cell[0]}-{cell[1]}"]
        assert (quality, diversity, stop) == pytest.approx(
            (point.quality, point.diversity, point.stop), abs=1e-5
        )
        assert strict == pytest.approx(point.strict_quality, rel=1e-4, abs=1e-9)
