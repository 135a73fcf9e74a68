"""Multi-token answers on the demo pair: a small open-answer set swept on a few intervals.

Usage: python benchmarks/trie_demo.py [--intervals 13-14,13-17,0-1,16-17,8-12]
Prints the tries' sizes (laid out and what they leave out), the time of the references and of the
intervals, each result's numbers, and the largest per-prompt probability of the left-out spellings.
"""

from __future__ import annotations

import argparse
import calendar
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from slr_core.crc.branches import make_batch  # noqa: E402
from slr_core.crc.prompts import CRCPrompt, encode_prompts  # noqa: E402
from slr_core.crc.trie import build_trie  # noqa: E402
from slr_core.crc.trie_scores import SCORE_COLUMNS  # noqa: E402
from slr_core.engine.capture import Reference  # noqa: E402
from slr_core.engine.sweep import Stats, model_scores, sweep_intervals, widen_layout  # noqa: E402
from slr_core.models.chat import end_of_turn_ids  # noqa: E402
from slr_core.models.loading import load_pair  # noqa: E402
from slr_core.models.settings import Settings  # noqa: E402
from slr_core.slr.intervals import parse_intervals  # noqa: E402

PROMPTS = [
    CRCPrompt(
        "Name a month of the year. Do not include anything else in your reply.",
        tuple(calendar.month_name[1:]),
    ),
    CRCPrompt(
        "Name a day of the week. Do not include anything else in your reply.", tuple(calendar.day_name)
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--intervals", default="13-14,13-17,0-1,16-17,8-12")
    args = parser.parse_args()
    started = time.perf_counter()
    pair = load_pair("demo:pre", "demo:post", Settings(device="cpu", dtype="float32"))
    print(f"load {time.perf_counter() - started:.1f} s; threads {torch.get_num_threads()}")
    started = time.perf_counter()
    encoded = encode_prompts(pair.tokenizer, PROMPTS)
    print(f"encode {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    widened = widen_layout(pair, encoded)
    print(f"widen {time.perf_counter() - started:.1f} s")
    for prompt, trie, wide in zip(PROMPTS, encoded.tries, widened.tries):
        full = len(build_trie(pair.tokenizer, prompt.valid, 100000))
        left_out = len(wide.root_omitted) + sum(map(len, wide.omitted.values()))
        print(f"{prompt.valid[0]}...: full trie {full} nodes, pruned {len(trie)}, widened {len(wide)}, "
              f"left-out continuations {left_out}")  # fmt: skip
    encoded = widened
    batch = make_batch(encoded, pair.tokenizer.pad_token_id, pair.device)
    reference, end_ids = Reference(pair.post, batch), end_of_turn_ids(pair.tokenizer)
    for name, model in (("post", pair.post), ("pre", pair.pre)):
        stats, began = Stats(), time.perf_counter()
        scores = model_scores(model, encoded, batch, end_ids, stats, reference)
        _show(name, scores, stats, time.perf_counter() - began)
    wanted = parse_intervals(args.intervals, pair.num_layers)
    stats, began = Stats(), time.perf_counter()
    for result in sweep_intervals(pair, encoded, wanted, stats=stats, reference=reference):
        _show(f"[{result.start}, {result.end}]", result.per_prompt, stats, None)
    seconds = time.perf_counter() - began
    print(f"{len(wanted)} intervals: {seconds:.1f} s; head rows {stats.head_rows}, nodes skipped "
          f"{stats.branches_skipped}, largest left-out mass {stats.omitted_mass:.3g} "
          f"({stats.omitted_share:.3g} of its Q)")  # fmt: skip


def _show(name: str, scores: torch.Tensor, stats: Stats, seconds: float | None) -> None:
    means = scores.mean(dim=0).tolist()
    numbers = ", ".join(f"{column} {value:.4g}" for column, value in zip(SCORE_COLUMNS, means))
    per_prompt = "; ".join(f"{row[0]:.4g}/{row[3]:.4g}" for row in scores.tolist())
    left = f"left-out mass {stats.omitted_mass:.3g} ({stats.omitted_share:.3g} of Q)"
    timing = f" ({seconds:.1f} s, {left})" if seconds is not None else ""
    print(f"{name}: {numbers}; per prompt Q/strict {per_prompt}{timing}")


if __name__ == "__main__":
    main()
