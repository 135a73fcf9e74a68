"""Each speed lever of the sweep, measured alone on one pair: sweep wall and CPU time per setting.

Usage: PYTHONPATH=. python benchmarks/levers.py --pre DIR --post DIR [--strict] [--intervals SPEC] [--out FILE]
Settings (all exact; the layout ones are proven on the post model before use, as in the sweep):
plain layout (no shared prefix, full last layer), + shared prefix, + narrowed last layer, both
(the default), both without the per-chunk argument memo, and chunk sizes (--batch-tokens).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from slr_core.crc.prompts import default_prompts, encode_prompts  # noqa: E402
from slr_core.engine import prefix as prefix_module  # noqa: E402
from slr_core.engine import sweep  # noqa: E402
from slr_core.engine.benchmark import time_sweep  # noqa: E402
from slr_core.engine.cached_sweep import all_intervals  # noqa: E402
from slr_core.engine.prefix import Layout, cache_name, common_prefix  # noqa: E402
from slr_core.engine.stack import _disproof  # noqa: E402
from slr_core.models.loading import load_pair  # noqa: E402
from slr_core.models.settings import Settings  # noqa: E402
from slr_core.slr.intervals import parse_intervals  # noqa: E402


def forced(prefix: bool, narrow: bool):
    """A choose_layout that takes exactly this layout, after the same proof the sweep requires."""

    def choose(layers, cap, batch, share=True):
        layout = Layout(common_prefix(batch) if prefix else 0, cache_name(cap) if prefix else None, narrow)
        problem = _disproof(layers, cap, batch, layout)
        if problem:
            raise RuntimeError(f"{layout}: {problem}")
        return layout

    return choose


def _no_memo(self, name, value):
    # The per-call cutting of recorded arguments, as before the memo: every layer call cuts again.
    return prefix_module._window(name, value, self.rows, self.cap.num_prompts, self.lo, self.hi)


SETTINGS = {
    "plain layout": (forced(False, False), None, 16384),
    "+ shared prefix": (forced(True, False), None, 16384),
    "+ narrowed last layer": (forced(False, True), None, 16384),
    "both (default)": (forced(True, True), None, 16384),
    "both, no argument memo": (forced(True, True), _no_memo, 16384),
    "both, batch_tokens 4096": (forced(True, True), None, 4096),
    "both, batch_tokens 65536": (forced(True, True), None, 65536),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pre", required=True)
    parser.add_argument("--post", required=True)
    parser.add_argument("--strict", action="store_true", help="strict CRC (branches) instead of first-token")
    parser.add_argument("--intervals")
    parser.add_argument("--only", nargs="*", help="run only these settings, in this order")
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(2)
    pair = load_pair(args.pre, args.post, Settings(device="cpu", dtype="float32"))
    encoded = encode_prompts(pair.tokenizer, default_prompts())
    n = pair.num_layers
    wanted = parse_intervals(args.intervals, n) if args.intervals else all_intervals(n)
    results = {}
    for name in args.only or SETTINGS:  # in the order given, so that runs can alternate
        choose, cut, batch_tokens = SETTINGS[name]
        with ExitStack() as patches:
            patches.enter_context(mock.patch.object(sweep, "choose_layout", choose))
            if cut:
                patches.enter_context(mock.patch.object(prefix_module.Arguments, "_cut", cut))
            cpu = time.process_time()
            seconds, stats, _ = time_sweep(pair, encoded, wanted, batch_tokens, args.strict)
            cpu = time.process_time() - cpu
        results[name] = {"wall_s": seconds, "cpu_s": cpu, "phases": stats.seconds}
        print(
            f"{name:28s} wall {seconds:7.1f} s  cpu {cpu:7.1f} s  {json.dumps(_rounded(stats.seconds))}",
            flush=True,
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)


def _rounded(phases: dict) -> dict:
    return {k: round(v, 1) for k, v in phases.items()}


if __name__ == "__main__":
    main()
