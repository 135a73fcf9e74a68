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
from slr_core.crc import default_prompts, encode_prompts
from slr_core.survey import all_intervals, complete, context_id, survey
from slr_core.sweep import Stats


def _encoded(pair, count=6):
    return encode_prompts(pair.tokenizer, default_prompts()[:count])


def test_interrupted_survey_resumes_with_only_the_missing_intervals(tiny_pair):
    encoded = _encoded(tiny_pair)
    full = complete(survey(tiny_pair, encoded, use_cache=False))
    run = survey(tiny_pair, encoded)
    for landscape in run:
        if len(landscape.intervals) == 4:
            break
    run.close()  # as if Ctrl-C arrived here
    stats = Stats()
    resumed = complete(survey(tiny_pair, encoded, stats=stats))
    missing = len(all_intervals(tiny_pair.num_layers)) - 4
    # Only the missing intervals went through the LM head (plus the two cached references: none).
    assert stats.head_rows == missing * len(encoded)
    assert resumed.intervals.keys() == full.intervals.keys()
    for key, point in full.intervals.items():  # batch shapes differ, so rounding may too
        assert resumed.intervals[key].quality == pytest.approx(point.quality, abs=1e-6)
        assert resumed.intervals[key].diversity == pytest.approx(point.diversity, abs=1e-6)
    assert resumed.post == full.post and resumed.pre == full.pre


def test_unreadable_entry_is_recomputed_not_trusted(tiny_pair):
    encoded = _encoded(tiny_pair)
    first = complete(survey(tiny_pair, encoded))
    key = cache.result_key(context_id(tiny_pair, encoded), "interval/1-2")
    with diskcache.Cache(str(cache.cache_root() / "results")) as store:
        store.set(key, {"schema": cache.SCHEMA_VERSION, "quality": "garbage"})
    stats = Stats()
    again = complete(survey(tiny_pair, encoded, stats=stats))
    assert stats.head_rows == len(encoded)  # exactly one interval recomputed
    assert again.intervals[(1, 2)].quality == pytest.approx(first.intervals[(1, 2)].quality, abs=1e-6)


def test_a_different_prompt_set_never_reads_old_numbers(tiny_pair):
    first = _encoded(tiny_pair, 6)
    complete(survey(tiny_pair, first))
    stats = Stats()
    complete(survey(tiny_pair, _encoded(tiny_pair, 5), stats=stats))
    assert stats.head_rows > 0
    assert context_id(tiny_pair, first) != context_id(tiny_pair, _encoded(tiny_pair, 5))


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


def test_a_shipped_landscape_is_used_only_for_its_own_context(tiny_pair, tmp_path, monkeypatch):
    from slr_core import survey as survey_module
    from slr_core.export import write_csv

    encoded = _encoded(tiny_pair)
    computed = complete(survey(tiny_pair, encoded, use_cache=False))
    write_csv(computed, tmp_path / "landscapes" / "tiny.csv")
    monkeypatch.setattr(survey_module, "SHIPPED_DIR", tmp_path / "landscapes")
    stats = Stats()
    seeded = complete(survey(tiny_pair, encoded, stats=stats))
    assert stats.head_rows == 0 and stats.layer_evals == 0  # nothing recomputed
    for key, point in computed.intervals.items():
        assert seeded.intervals[key].quality == pytest.approx(point.quality, abs=1e-6)
    other = encode_prompts(tiny_pair.tokenizer, default_prompts()[:5])
    assert survey_module.shipped_points(context_id(tiny_pair, other)) == {}
