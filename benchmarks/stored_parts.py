"""A map built over several runs and engine versions: write what one engine's cache holds, then join parts.

Usage:
  PYTHONPATH=ENGINE_TREE python benchmarks/stored_parts.py stored OUT.csv [--prompts open]
  python benchmarks/stored_parts.py join OUT.csv PART.csv [PART.csv ...]

`stored` writes every interval of the demo pair that the cache (SLR_CACHE_DIR) holds for the prompt set
under the engine on PYTHONPATH (run it as a script: `python -m` would put the working directory first),
and prints the missing ones. `join` writes the parts' intervals as one landscape: the parts must agree on
everything in their meta but the code version, an interval held twice must agree within 1e-4, post and
pre come from the first part, and the meta lists which code version measured each interval. This is how
assets/landscapes/demo-open.csv was assembled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if "stored" not in sys.argv[1:2]:  # join reads CSVs with this tree's code; stored keeps PYTHONPATH's
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slr_core.export.writer import write_csv  # noqa: E402
from slr_core.report.difference import read_landscape  # noqa: E402
from slr_core.slr.landscape import METRICS, Landscape  # noqa: E402

AGREEMENT = 1e-4  # the bar every shown number meets against the naive loop


def stored(out: str, prompts: str) -> None:
    """Write the cache's intervals of the demo pair under this engine, and print what is missing."""
    from slr_core.cache import code_version
    from slr_core.crc.prompt_sets import prompt_set
    from slr_core.crc.prompts import encode_prompts
    from slr_core.engine.cached_sweep import all_intervals, stored_landscape
    from slr_core.models.loading import load_pair
    from slr_core.models.settings import Settings

    pair = load_pair("demo:pre", "demo:post", Settings(device="cpu", dtype="float32"))
    landscape = stored_landscape(pair, encode_prompts(pair.tokenizer, prompt_set(prompts)))
    missing = sorted(all_intervals(pair.num_layers) - set(landscape.intervals))
    print(
        f"code {code_version()}: {len(landscape.intervals)} intervals stored, {len(missing)} missing {missing}"
    )
    landscape.meta["prompts"] = prompts
    write_csv(landscape, out)


def join(out: str, paths: list[str]) -> None:
    """Write the parts' intervals as one landscape, each interval's code version in the meta."""
    parts = [read_landscape(path) for path in paths]
    first = parts[0]
    meta = {key: value for key, value in first.meta.items() if key not in ("code_version", "note")}
    joined = Landscape(first.num_layers, first.post, first.pre, meta=meta)
    by_version: dict[str, list[str]] = {}
    for path, part in zip(paths, parts):
        _check_same(first, part, path)
        for cell, point in sorted(part.intervals.items()):
            if cell in joined.intervals:
                _check_agree(joined.intervals[cell], point, cell)
                continue
            joined.intervals[cell] = point
            by_version.setdefault(part.meta["code_version"], []).append(f"{cell[0]}-{cell[1]}")
    joined.meta["references_code_version"] = first.meta["code_version"]  # post and pre
    joined.meta["intervals_by_code_version"] = by_version
    joined.meta["joined_from"] = [Path(path).name for path in paths]
    write_csv(joined, out)
    print(
        f"{len(joined.intervals)} intervals from {len(parts)} parts: "
        + str({v: len(c) for v, c in by_version.items()})
    )


def _check_same(first: Landscape, part: Landscape, path: str) -> None:
    for key in set(first.meta) | set(part.meta):
        if key not in ("code_version", "note", "command") and first.meta.get(key) != part.meta.get(key):
            _refuse(f"{path}: {key} is {part.meta.get(key)!r}, the first part's is {first.meta.get(key)!r}")


def _check_agree(kept, other, cell) -> None:
    for metric in METRICS:
        a, b = getattr(kept, metric), getattr(other, metric)
        if (a is None) != (b is None) or (a is not None and abs(a - b) > AGREEMENT):
            _refuse(f"interval {cell}: {metric} is {a} in one part and {b} in another")


def _refuse(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(2)  # bad input, as in the CLI


def main() -> None:
    """stored or join."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("stored")
    one.add_argument("out")
    one.add_argument("--prompts", default="open")
    many = sub.add_parser("join")
    many.add_argument("out")
    many.add_argument("parts", nargs="+")
    args = parser.parse_args()
    stored(args.out, args.prompts) if args.command == "stored" else join(args.out, args.parts)


if __name__ == "__main__":
    main()
