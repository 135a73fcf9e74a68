"""Hosted mode tried as a hostile visitor would, through the app's handlers and its HTTP API (issue 21)."""

from __future__ import annotations

import time

import gradio as gr
import pytest

import app
from slr_core.cli import main as cli_main
from slr_core.engine.cached_sweep import first_look
from slr_core.engine.lambda_slice import LAMBDAS, lambda_slice
from slr_core.serve.session import SessionView, snapshot

CRC_PROMPT = "Generate a random integer in the range [2, 6]. Do not include anything else in your reply."
HUGE = "0-99999999999"

pytestmark = pytest.mark.usefixtures("page")


@pytest.fixture
def shown(page, tiny_paths) -> SessionView:
    """A session showing the tiny Llama pair through the page's own Load handler."""
    pre, post = tiny_paths("llama")
    view = SessionView()
    page.show_pair(view, str(pre), str(post))
    view.selected = (0, 1)
    return view


# ---------------------------------------------------------------- item 1: one request takes the server down


def test_a_huge_layer_range_is_refused_at_once_by_compare_slice_and_export(
    page, shown, tmp_path, monkeypatch
):
    monkeypatch.setenv("SLR_EXPORT_DIR", str(tmp_path / "exports"))
    handlers = {
        "compare": lambda layers: next(
            page.compare(shown, CRC_PROMPT, 2, 0.1, 1.0, 4, 0, False, layers, 1.0)
        ),
        "slice": lambda layers: next(page.slice_lambda(shown, layers)),
        "export": lambda layers: page.export_selected(shown, 0, 1, layers, 1.0),
    }
    for name, handler in handlers.items():
        for layers in (HUGE, "0-3," * 2000):
            started = time.perf_counter()
            with pytest.raises(gr.Error, match="invalid for a 4-layer model|characters long"):
                handler(layers)
            assert time.perf_counter() - started < 1.0, name


def test_the_cli_refuses_a_huge_layer_range_with_exit_2(tiny_paths, tmp_path, capsys):
    pre, post = tiny_paths("llama")
    argv = ["export", "--pre", str(pre), "--post", str(post), "--layers", HUGE, "--out", str(tmp_path / "x")]
    started = time.perf_counter()
    assert cli_main(argv) == 2
    assert "invalid for a 4-layer model" in capsys.readouterr().err and time.perf_counter() - started < 30


# ---------------------------------------------------------------- item 6: repeated values multiply the work


def test_repeated_temperatures_count_once_and_too_many_are_refused(page, shown):
    from slr_core.serve.session import evaluation_settings

    assert evaluation_settings([1.0] * 200, 0) == ([1.0], 0)
    assert evaluation_settings([1.5, 1.0, 1.5], 0)[0] == [1.0, 1.5]
    with pytest.raises(gr.Error, match="at most 8 different values"):
        next(page.evaluate(shown, "qa", True, [0.5 + k / 10 for k in range(9)], 0))
    with pytest.raises(gr.Error, match="at most 8 different values"):
        next(page.evaluate(shown, "qa", True, [1.0] * 10**6, 0))


# ---------------------------------------------------------------- items 7 and 11: the lambda slice


def test_the_slice_draws_point_by_point_stops_when_closed_and_its_zero_is_on_the_full_set(
    page, shown, monkeypatch
):
    from slr_core.engine import lambda_slice as slice_module

    entry = app.REGISTRY.get(shown.key)
    # A first look in progress: the map and the post-trained point are on 2 prompts only.
    shown.landscape = snapshot(next(first_look(entry.pair, entry.encoded, use_cache=False)))
    assert "post" in shown.landscape.coarse
    scored = []
    real_scores = slice_module.checked_scores
    monkeypatch.setattr(
        slice_module, "checked_scores", lambda *a, **k: scored.append(1) or real_scores(*a, **k)
    )
    steps = page.slice_lambda(shown, "1-2")
    first = next(steps)
    assert len(scored) == 1 and len(shown.lambda_slice[1]) == 1  # one point drawn, one point computed
    names = [trace["name"] for trace in first[page.tradeoff].to_dict()["data"]]
    assert any("λ = 0 … 1" in name for name in names)
    next(steps)
    steps.close()  # the visitor pressed Stop, or left
    assert len(scored) == 2
    full = lambda_slice(entry.pair, entry.encoded, shown.restoration("1-2"), use_cache=False, lambdas=(0.0,))
    assert shown.lambda_slice[1][0.0] == full[0.0] != shown.landscape.post  # λ = 0 on all prompts
    # Cached as before: the rest of the slice computes only the points not yet computed.
    before = len(scored)
    updates = list(page.slice_lambda(shown, "1-2"))
    assert len(updates) == len(LAMBDAS) and len(scored) - before == len(LAMBDAS) - 2
    # The Stop button's event cancels the slice's event (Gradio closes the generator, as above).
    sliced = [index for index, fn in page.demo.fns.items() if fn.name == "slice_lambda"]
    stops = [fn for fn in page.demo.fns.values() if set(sliced) & set(fn.cancels or [])]
    assert sliced and stops
    assert any(page.slice_stop._id in [target[0] for target in fn.targets] for fn in stops)


# ---------------------------------------------------------------- items 5 and 8: through the HTTP API


@pytest.fixture
def served(tiny_paths, tmp_path, monkeypatch):
    """The real app, hosted, on the tiny pair, serving on a free localhost port: (url, Blocks)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launched, original = {}, gr.Blocks.launch

    def launch(blocks, **kwargs):
        launched["blocks"] = blocks
        return original(blocks, **{**kwargs, "prevent_thread_lock": True, "quiet": True})

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    for name in ("POLICY", "SETTINGS"):
        monkeypatch.setattr(app, name, getattr(app, name))
    for name in ("policy", "capacity", "budget_bytes"):
        monkeypatch.setattr(app.REGISTRY, name, getattr(app.REGISTRY, name))
    monkeypatch.setattr(app, "embedding_dissimilarity", lambda texts: None)  # no embedder warm-up
    pre, post = (str(path) for path in tiny_paths("llama"))
    for name, value in {
        "SLR_HOSTED": "1",
        "SLR_EXPORT_DIR": str(tmp_path / "x"),
        "SLR_PRE": pre,
        "SLR_POST": post,
    }.items():
        monkeypatch.setenv(name, value)
    argv = ["--pre", pre, "--post", post, "--device", "cpu", "--port", str(port)]
    assert app.main(argv) == 0
    yield f"http://127.0.0.1:{port}", launched["blocks"]
    launched["blocks"].close()


def _fn_index(blocks, name: str) -> int:
    return next(index for index, fn in blocks.fns.items() if fn.name == name)


def _join(url: str, session: str, fn_index: int, data: list, address: str):
    import httpx2 as httpx

    body = {
        "data": data,
        "fn_index": fn_index,
        "session_hash": session,
        "event_data": None,
        "trigger_id": None,
    }
    return httpx.post(
        f"{url}/gradio_api/queue/join", json=body, headers={"X-Forwarded-For": address}, timeout=30
    )


def _finished(url: str, session: str, address: str) -> dict:
    import json

    import httpx2 as httpx

    with httpx.stream(
        "GET", f"{url}/gradio_api/queue/data", params={"session_hash": session},
        headers={"X-Forwarded-For": address}, timeout=60,
    ) as stream:  # fmt: skip
        for line in stream.iter_lines():
            if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_completed":
                return json.loads(line[5:])
    raise AssertionError("the stream ended without a result")


def test_through_the_http_api_a_huge_range_errs_at_once_and_a_20_mb_upload_is_refused(served):
    import httpx2 as httpx

    url, blocks = served
    big = httpx.post(f"{url}/gradio_api/upload", files={"files": ("big.bin", b"0" * 20 * 2**20)}, timeout=60)
    assert big.status_code == 413, big.text
    small = httpx.post(f"{url}/gradio_api/upload", files={"files": ("small.txt", b"hello")}, timeout=60)
    assert small.status_code == 200
    assert _join(url, "v", _fn_index(blocks, "start_session"), [None], "10.0.0.9").status_code == 200
    assert _finished(url, "v", "10.0.0.9")["success"]
    started = time.perf_counter()
    data = [None, CRC_PROMPT, 2, 0.1, 1.0, 8, 0, False, HUGE, 1.0]
    assert _join(url, "v", _fn_index(blocks, "compare"), data, "10.0.0.9").status_code == 200
    result = _finished(url, "v", "10.0.0.9")
    assert not result["success"] and "invalid for a 4-layer model" in json_text(result)
    assert time.perf_counter() - started < 5 and httpx.get(url, timeout=30).status_code == 200  # still up


def json_text(value) -> str:
    import json

    return json.dumps(value)


def test_one_client_flooding_the_queue_never_keeps_a_new_visitor_out(served, capsys):
    import httpx2 as httpx

    url, blocks = served
    load, compare = _fn_index(blocks, "start_session"), _fn_index(blocks, "compare")
    evaluate, sweep = _fn_index(blocks, "evaluate"), _fn_index(blocks, "run_sweep")

    def join(session: str, fn_index: int, data: list, address: str):
        return _join(url, session, fn_index, data, address)

    def finished(session: str, address: str) -> dict:
        return _finished(url, session, address)

    flooder = "10.0.0.66"
    assert join("flood", load, [None], flooder).status_code == 200
    assert finished("flood", flooder)["success"]
    sampled = [None, CRC_PROMPT, 32, 0.1, 1.0, 256, 0, True, "", 1.0]
    accepted = refused = 0
    with app.DEVICE_TURN:  # the device is busy: whatever reaches it waits, so the rest stays queued
        for session in ["flood"] * 20 + [f"flood-{k}" for k in range(30)]:
            for fn_index, data in (
                (compare, sampled),
                (evaluate, [None, "qa", True, [1.0] * 300, 0]),
                (sweep, [None]),
            ):
                response = join(session, fn_index, data, flooder)
                accepted, refused = (
                    accepted + (response.status_code == 200),
                    refused + (response.status_code != 200),
                )
        limits, queue = blocks._queue.slr_limits, blocks._queue
        waiting = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
        assert refused > 0 and 0 < len(waiting) <= limits.heavy_per_client  # the per-address bound
        started = time.perf_counter()
        page = httpx.get(url, timeout=30)
        page_seconds = time.perf_counter() - started
        newcomer = join("newcomer", load, [None], "10.0.0.7")
        assert page.status_code == 200 and newcomer.status_code == 200, newcomer.text
        result = finished("newcomer", "10.0.0.7")
        load_seconds = time.perf_counter() - started
    assert result["success"], result
    with capsys.disabled():
        print(f"\nflood: {accepted} accepted, {refused} refused; new visitor's page {page_seconds:.2f} s, "
              f"its first load event done {load_seconds:.2f} s after")  # fmt: skip
