"""What laying prompts out again (relays) costs: chosen intervals of the demo pair on a prompt file.

Usage: python benchmarks/relay_cost.py PROMPTS.json 2-12,5-14,0-16 [--together] [--save scores.pt]
The layout is widened once (timed), then each interval is swept alone on it (with --together: all in
one sweep, column by column, each timed from the one before), one thread, and printed with its
seconds, how many prompts were laid out again for its hybrid, and its mean scores. Run it under two
commits (e.g. a `git worktree` of the older one on PYTHONPATH) and compare the saved
per-prompt scores: the README's relay figures were measured this way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from slr_core.cache import code_version  # noqa: E402
from slr_core.crc.branches import make_batch  # noqa: E402
from slr_core.crc.prompt_sets import load_prompts  # noqa: E402
from slr_core.crc.prompts import encode_prompts  # noqa: E402
from slr_core.engine.capture import Reference  # noqa: E402
from slr_core.engine.sweep import Stats, sweep_intervals, widen_layout  # noqa: E402
from slr_core.models.loading import load_pair  # noqa: E402
from slr_core.models.settings import Settings  # noqa: E402


def main() -> None:
    """Widen once, then time each interval alone (or all in one sweep, with --together)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts")
    parser.add_argument("intervals", help="comma-separated START-END")
    parser.add_argument("--together", action="store_true", help="one sweep of all (relays seed later ones)")
    parser.add_argument("--save", help="write {(start, end): per-prompt scores} here (torch.save)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pair = load_pair("demo:pre", "demo:post", Settings(device="cpu", dtype="float32"))
    began = time.perf_counter()
    encoded = widen_layout(pair, encode_prompts(pair.tokenizer, load_prompts(args.prompts)))
    print(f"code {code_version()}: widened in {time.perf_counter() - began:.1f} s", flush=True)
    reference = Reference(pair.post, make_batch(encoded, pair.tokenizer.pad_token_id, pair.device))
    cells = [tuple(map(int, cell.split("-"))) for cell in args.intervals.split(",")]
    runs = [set(cells)] if args.together else [{cell} for cell in cells]
    scores = {}
    for wanted in runs:
        stats, began = Stats(), time.perf_counter()
        for result in sweep_intervals(pair, encoded, wanted, stats=stats, reference=reference):
            _report(result, stats, time.perf_counter() - began)
            scores[(result.start, result.end)], began = result.per_prompt, time.perf_counter()
    if args.save:
        torch.save(scores, args.save)


def _report(result, stats: Stats, seconds: float) -> None:
    # One interval's seconds (since the sweep or the previous interval) and the sweep's work so far.
    means = ", ".join(f"{value:.6f}" for value in result.per_prompt.mean(dim=0).tolist())
    work = (
        f"{stats.prompts_relaid} prompts relaid ({getattr(stats, 'relays_seeded', 0)} seeded), "  # 0 before 49b9f19
        f"{stats.head_rows} head rows, {stats.heads_reused} reused"
    )
    print(f"[{result.start}, {result.end}]: {seconds:.1f} s, {work}; means {means}", flush=True)


if __name__ == "__main__":
    main()
