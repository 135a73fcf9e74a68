"""The cached survey: resumes after an interruption, recomputes unreadable entries, keys by content."""

import csv
import os
import signal
import subprocess
import sys
import time

import diskcache
import pytest

from slr_core import cache
from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.cached_sweep import all_intervals, complete, context_id, survey
from slr_core.engine.sweep import Stats


def _encoded(pair, count=6):
    return encode_prompts(pair.tokenizer, default_prompts()[:count])


@pytest.fixture(scope="module")
def uncached(tiny_pair):
    """The full landscape of the tiny pair over 6 prompts, computed once without the cache."""
    return complete(survey(tiny_pair, _encoded(tiny_pair), use_cache=False))


def _spy_on_computation(monkeypatch) -> dict[str, list]:
    """Record what the cached sweep hands to the engine: interval sets, and models scored whole."""
    from slr_core.engine import cached_sweep

    calls: dict[str, list] = {"intervals": [], "models": []}
    real_sweep, real_scores = cached_sweep.sweep_intervals, cached_sweep.checked_scores

    def sweep_intervals(pair, encoded, wanted, *args, **kwargs):
        calls["intervals"].append(set(wanted))
        return real_sweep(pair, encoded, wanted, *args, **kwargs)

    def checked_scores(pair, model, *args, **kwargs):
        calls["models"].append(model)
        return real_scores(pair, model, *args, **kwargs)

    monkeypatch.setattr(cached_sweep, "sweep_intervals", sweep_intervals)
    monkeypatch.setattr(cached_sweep, "checked_scores", checked_scores)
    return calls


def _assert_same_landscape(got, expected) -> None:
    assert got.intervals.keys() == expected.intervals.keys()
    for key, point in expected.intervals.items():  # batch shapes differ, so rounding may too
        assert got.intervals[key].quality == pytest.approx(point.quality, abs=1e-6), key
        assert got.intervals[key].diversity == pytest.approx(point.diversity, abs=1e-6), key
    for name in ("post", "pre"):
        assert getattr(got, name).quality == pytest.approx(getattr(expected, name).quality, abs=1e-6)
        assert getattr(got, name).diversity == pytest.approx(getattr(expected, name).diversity, abs=1e-6)


def test_interrupted_survey_resumes_with_only_the_missing_intervals(tiny_pair, uncached, monkeypatch):
    encoded = _encoded(tiny_pair)
    run = survey(tiny_pair, encoded)
    for landscape in run:
        if len(landscape.intervals) == 4:
            break
    stored = set(landscape.intervals)  # each result is stored the moment it is yielded
    run.close()  # as if Ctrl-C arrived here
    calls = _spy_on_computation(monkeypatch)
    resumed = complete(survey(tiny_pair, encoded))
    assert calls["intervals"] == [all_intervals(tiny_pair.num_layers) - stored]
    assert calls["models"] == []  # the references were stored before the intervals
    _assert_same_landscape(resumed, uncached)


def test_unreadable_entry_is_recomputed_not_trusted(tiny_pair, monkeypatch):
    encoded = _encoded(tiny_pair)
    first = complete(survey(tiny_pair, encoded))
    key = cache.result_key(context_id(tiny_pair, encoded), "interval/1-2")
    with diskcache.Cache(str(cache.cache_root() / "results")) as store:
        store.set(key, {"schema": cache.SCHEMA_VERSION, "quality": "garbage"})
    calls = _spy_on_computation(monkeypatch)
    again = complete(survey(tiny_pair, encoded))
    assert calls["intervals"] == [{(1, 2)}] and calls["models"] == []  # exactly that one, recomputed
    _assert_same_landscape(again, first)


def test_cached_sweep_computes_exactly_the_missing_intervals(tiny_pair, uncached, monkeypatch):
    encoded = _encoded(tiny_pair)
    everything = all_intervals(tiny_pair.num_layers)
    stored = {(0, 0), (1, 2), (0, tiny_pair.num_layers - 1), (tiny_pair.num_layers - 1,) * 2}
    complete(survey(tiny_pair, encoded, intervals=stored))  # fills the cache with these and the references
    calls = _spy_on_computation(monkeypatch)
    resumed = complete(survey(tiny_pair, encoded))
    assert calls["intervals"] == [everything - stored]  # one engine call, for exactly the missing cells
    assert calls["models"] == []  # both references came from the cache
    _assert_same_landscape(resumed, uncached)
    calls["intervals"].clear()
    complete(survey(tiny_pair, encoded))
    assert calls["intervals"] == [] and calls["models"] == []  # a complete cache computes nothing


def test_a_different_prompt_set_never_reads_old_numbers(tiny_pair, monkeypatch):
    first, second = _encoded(tiny_pair, 6), _encoded(tiny_pair, 5)
    assert context_id(tiny_pair, first) != context_id(tiny_pair, second)
    complete(survey(tiny_pair, first))
    expected = complete(survey(tiny_pair, second, use_cache=False))
    calls = _spy_on_computation(monkeypatch)
    got = complete(survey(tiny_pair, second))
    assert calls["intervals"] == [all_intervals(tiny_pair.num_layers)]  # nothing reused...
    assert calls["models"] == [tiny_pair.post, tiny_pair.pre]  # ... not even the references
    _assert_same_landscape(got, expected)


def test_killed_cli_sweep_resumes(tiny_paths, tmp_path, isolated_cache):
    pre, post = tiny_paths("gemma3")
    env = dict(os.environ, SLR_CACHE_DIR=str(isolated_cache), PYTHONPATH=os.getcwd())
    command = [sys.executable, "-m", "slr_core", "sweep", "--pre", str(pre), "--post", str(post)]
    # A tiny memory knob makes the sweep slow enough to be killed part-way.
    slow = command + ["--out", str(tmp_path / "a.csv"), "--batch-tokens", "1", "--device", "cpu"]
    process = subprocess.Popen(slow, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    stored = 0
    while time.time() < deadline and process.poll() is None:
        stored = _count_intervals(isolated_cache)
        if stored >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if stored < 2:
        pytest.skip("the sweep finished before it could be killed")
    done = subprocess.run(
        command + ["--out", str(tmp_path / "b.csv")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    fresh = subprocess.run(
        command + ["--out", str(tmp_path / "c.csv"), "--no-cache"], env=env, capture_output=True, text=True
    )
    resumed = list(csv.DictReader((tmp_path / "b.csv").open()))
    fresh_rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert [(r["kind"], r["start"], r["end"]) for r in resumed] == [
        (r["kind"], r["start"], r["end"]) for r in fresh_rows
    ]
    for a, b in zip(resumed, fresh_rows):
        assert float(a["quality"]) == pytest.approx(float(b["quality"]), abs=1e-5)
    assert fresh.returncode == 0


def _count_intervals(folder) -> int:
    try:
        with diskcache.Cache(str(folder / "results")) as store:
            return sum(1 for key in store.iterkeys() if "/interval/" in str(key))
    except Exception:
        return 0


def test_a_shipped_landscape_is_used_only_for_its_own_context(tiny_pair, uncached, tmp_path, monkeypatch):
    from slr_core.engine import cached_sweep as survey_module
    from slr_core.export.writer import write_csv

    encoded = _encoded(tiny_pair)
    computed = uncached
    write_csv(computed, tmp_path / "landscapes" / "tiny.csv")
    monkeypatch.setattr(survey_module, "SHIPPED_DIR", tmp_path / "landscapes")
    stats = Stats()
    seeded = complete(survey(tiny_pair, encoded, stats=stats))
    assert stats.head_rows == 0 and stats.layer_evals == 0  # nothing recomputed
    for key, point in computed.intervals.items():
        assert seeded.intervals[key].quality == pytest.approx(point.quality, abs=1e-6)
    other = encode_prompts(tiny_pair.tokenizer, default_prompts()[:5])
    assert survey_module.shipped_points(context_id(tiny_pair, other)) == {}


# ---------------------------------------------------------------- first look: coarse map, then full


def test_first_look_shows_every_interval_coarse_before_any_full_result(tiny_pair, uncached, monkeypatch):
    from slr_core.engine.cached_sweep import coarse_indices, first_look, is_complete, missing_intervals

    encoded, everything = _encoded(tiny_pair), all_intervals(tiny_pair.num_layers)
    calls = _spy_on_computation(monkeypatch)
    seen_complete_coarse, last = False, None
    for landscape in first_look(tiny_pair, encoded, coarse_prompts=2):
        full = landscape.intervals.keys() - landscape.coarse
        if full and not seen_complete_coarse:
            pytest.fail("a full result came before the coarse map was complete")
        if not seen_complete_coarse and landscape.coarse >= everything:
            seen_complete_coarse = True
            assert not is_complete(landscape) and missing_intervals(landscape) == everything
            assert landscape.coarse_matrix().sum() == len(everything) and {"post", "pre"} <= landscape.coarse
            assert all(landscape.intervals[key].strict_quality is None for key in everything)  # Q, D only
        last = landscape
    assert seen_complete_coarse and last.coarse == set() and is_complete(last) is False  # no soup asked
    assert missing_intervals(last) == set() and last.has_strict
    assert calls["intervals"] == [everything, everything]  # coarse pass, then full pass: once each
    assert coarse_indices(len(encoded), 2) == [0, 3]
    _assert_same_landscape(last, uncached)
    assert last.meta["num_prompts"] == len(encoded)  # the full set's provenance throughout


def test_first_look_resumes_the_coarse_pass_and_skips_it_when_full_results_exist(tiny_pair, monkeypatch):
    from slr_core.engine.cached_sweep import first_look

    encoded, everything = _encoded(tiny_pair), all_intervals(tiny_pair.num_layers)
    run = first_look(tiny_pair, encoded, coarse_prompts=2)
    for landscape in run:
        if len(landscape.coarse - {"post", "pre"}) == 3:
            break
    done = set(landscape.intervals)
    run.close()  # interrupted during the coarse pass
    calls = _spy_on_computation(monkeypatch)
    complete(first_look(tiny_pair, encoded, coarse_prompts=2))
    assert calls["intervals"] == [everything - done, everything]  # only the missing coarse cells
    calls["intervals"].clear()
    calls["models"].clear()
    for landscape in first_look(tiny_pair, encoded, coarse_prompts=2):
        assert not landscape.coarse  # a complete full cache: no coarse pass at all
    assert calls == {"intervals": [], "models": []}
