"""Hosted mode through the app's own handlers: each rule of docs/hosting.md refused on the server, with
a message naming hosted mode, and what the visitor had on screen kept."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import gradio as gr
import httpx2
import pytest
from huggingface_hub import errors as hub_errors

import app
from slr_core.models import loading as models
from slr_core.models import sources
from slr_core.models.hosting import HostedPolicy
from slr_core.serve.session import SessionView

CRC_PROMPT = "Generate a random integer in the range [2, 6]. Do not include anything else in your reply."


pytestmark = pytest.mark.usefixtures("page")  # conftest: the page, with the app on the CPU


@pytest.fixture
def operator_pair(tiny_paths, tmp_path, monkeypatch) -> tuple[str, str]:
    """The tiny Llama pair as the operator's own (SLR_PRE/SLR_POST), with an empty cache."""
    monkeypatch.setenv("SLR_CACHE_DIR", str(tmp_path / "cache"))
    return tuple(str(path) for path in tiny_paths("llama"))


def host(monkeypatch, operator: tuple[str, str], **rules) -> HostedPolicy:
    """Turn hosted mode on for the app's handlers and its registry (both restored after the test)."""
    policy = HostedPolicy(hosted=True, operator_sources=operator, allowed=("visitor-org/*",), **rules)
    monkeypatch.setattr(app, "POLICY", policy)
    for name in ("policy", "capacity", "budget_bytes"):
        monkeypatch.setattr(app.REGISTRY, name, getattr(app.REGISTRY, name))
    app.REGISTRY.follow(policy)
    return policy


def shown(page, operator) -> SessionView:
    view = SessionView()
    page.show_pair(view, *operator)
    return view


def state(view: SessionView) -> tuple:
    return view.key, view.landscape, view.selected, view.generation


@pytest.mark.parametrize(
    ("pre", "post", "says"),
    [
        ("/etc", "/etc", "Hosted mode does not load local files"),
        ("../models/x", "./y", "Hosted mode does not load local files"),
        ("/tmp/model.gguf", "/tmp/model.gguf", "Hosted mode does not load local files"),
        ("someone/base", "someone/instruct", "Hosted mode loads only the presets"),
    ],
)
def test_a_local_path_or_an_unlisted_id_is_refused_and_the_pair_on_screen_stays(
    page, operator_pair, monkeypatch, pre, post, says
):
    host(monkeypatch, operator_pair)
    view = shown(page, operator_pair)
    before = state(view)
    with pytest.raises(gr.Error, match=says):
        page.show_pair(view, pre, post)
    assert state(view) == before


def _metadata(count: int, tokens: list):
    def get_safetensors_metadata(repo_id, revision=None, token=None, **kwargs):
        tokens.append(token)
        return SimpleNamespace(parameter_count={"BF16": count})

    return get_safetensors_metadata


def _no_download(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("nothing may be downloaded before the size check")

    monkeypatch.setattr(models, "check_reachable", lambda source: None)
    monkeypatch.setattr(sources, "hub_commit", lambda source: "c" * 40)  # pinned first: metadata only
    monkeypatch.setattr(sources, "snapshot", refuse)
    monkeypatch.setattr(models, "load_model", refuse)


def test_an_oversize_model_is_refused_with_its_size_before_any_download(page, operator_pair, monkeypatch):
    import huggingface_hub

    host(monkeypatch, operator_pair, max_params=2 * 10**9)
    view = shown(page, operator_pair)
    before, tokens = state(view), []
    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", _metadata(7_615_616_512, tokens))
    _no_download(monkeypatch)
    with pytest.raises(gr.Error, match=r"7\.62 B parameters.*at most 2\.00 B \(SLR_MAX_PARAMS\)"):
        page.show_pair(view, "visitor-org/base-7b", "visitor-org/instruct-7b")
    assert state(view) == before
    assert tokens and all(token is False for token in tokens)  # a glob-allowed repo: no operator token


def test_a_gated_repo_is_asked_for_without_the_operators_token(page, operator_pair, monkeypatch):
    import huggingface_hub

    host(monkeypatch, operator_pair, max_params=2 * 10**9)
    monkeypatch.setenv("HF_TOKEN", "hf_operator_secret")
    view, tokens = shown(page, operator_pair), []

    def gated(repo_id, revision=None, token=None, **kwargs):
        tokens.append(token)
        response = httpx2.Response(401, request=httpx2.Request("GET", f"https://huggingface.co/{repo_id}"))
        raise hub_errors.GatedRepoError("Access to this repo is restricted", response=response)

    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", gated)
    _no_download(monkeypatch)
    with pytest.raises(gr.Error, match="gated or private") as raised:
        page.show_pair(view, "visitor-org/gated-base", "visitor-org/gated-instruct")
    assert tokens == [False] and "hf_operator_secret" not in raised.value.message


def test_a_prompt_over_the_cap_is_refused(page, operator_pair, monkeypatch):
    host(monkeypatch, operator_pair, prompt_max_chars=100)
    view = shown(page, operator_pair)
    view.selected = (0, 1)
    with pytest.raises(gr.Error, match=r"at most 100 \(SLR_PROMPT_CHARS\)"):
        next(page.compare(view, "x" * 101, 2, 0.1, 1.0, 4, 0, False))


def test_only_the_quick_evaluation_runs(page, operator_pair, monkeypatch):
    host(monkeypatch, operator_pair)
    view = shown(page, operator_pair)
    with pytest.raises(gr.Error, match="Hosted mode runs the quick evaluation only"):
        next(page.evaluate(view, "qa", False, [1.0], 0))


def test_exports_expire_fit_the_quota_and_keep_only_the_zip(page, operator_pair, tmp_path, monkeypatch):
    exports = tmp_path / "exports"
    exports.mkdir()
    monkeypatch.setenv("SLR_EXPORT_DIR", str(exports))
    old = exports / "slr-old-0-1-aaaaaaaaaaaa.zip"
    old.write_bytes(b"0" * 1000)
    os.utime(old, (time.time() - 7200, time.time() - 7200))  # two hours old
    host(monkeypatch, operator_pair, export_ttl_seconds=3600, export_quota_bytes=2**30)
    view = shown(page, operator_pair)
    view.selected = (0, 1)
    update = page.export_selected(view, 0, 1)
    archive = update[page.export_file]["value"]
    assert not old.exists()  # expired
    assert [path.name for path in exports.iterdir()] == [os.path.basename(archive)]  # the zip only
    # An export that can never fit the quota is refused before anything is written.
    host(monkeypatch, operator_pair, export_quota_bytes=1000)
    with pytest.raises(gr.Error, match="Export failed: .*export quota"):
        page.export_selected(view, 1, 1)
    assert [path.name for path in exports.iterdir()] == [os.path.basename(archive)]


def test_an_evicted_pair_is_not_reloaded_by_a_stale_click(page, operator_pair, tiny_paths, monkeypatch):
    other = tuple(str(path) for path in tiny_paths("qwen2"))
    host(monkeypatch, operator_pair + other, max_pairs=1)
    first = shown(page, operator_pair)
    shown(page, other)  # another visitor's load evicts the first pair (one pair at a time)
    assert first.key not in app.REGISTRY
    event = SimpleNamespace(index=[0, 1])
    with pytest.raises(gr.Error, match="press Load pair to load it again"):
        page.select_cell(first, event)
    assert first.key not in app.REGISTRY  # the click loaded nothing


def test_the_app_launches_hosted_with_a_bounded_queue(operator_pair, monkeypatch, tmp_path):
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda blocks, **kwargs: launched.update(blocks=blocks))
    monkeypatch.setattr(app, "POLICY", app.POLICY)
    monkeypatch.setattr(app, "SETTINGS", app.SETTINGS)
    for name in ("policy", "capacity", "budget_bytes"):
        monkeypatch.setattr(app.REGISTRY, name, getattr(app.REGISTRY, name))
    monkeypatch.setenv("SLR_HOSTED", "1")
    monkeypatch.setenv("SLR_EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.setattr(app, "embedding_dissimilarity", lambda texts: None)  # no embedder warm-up
    pre, post = operator_pair
    monkeypatch.setenv("SLR_PRE", pre)  # main() sets both from the flags; undone after the test
    monkeypatch.setenv("SLR_POST", post)
    assert app.main(["--pre", pre, "--post", post, "--device", "cpu"]) == 0
    assert app.POLICY.hosted and app.REGISTRY.policy is app.POLICY
    # SLR_QUEUE_MAX's hosted default bounds the heavy events of everyone (slr_core.serve.admission),
    # which replaces Gradio's own max_size (it counted a new visitor's page load too).
    assert launched["blocks"]._queue.slr_limits.heavy_total == 16
    assert launched["blocks"]._queue.max_size is None
