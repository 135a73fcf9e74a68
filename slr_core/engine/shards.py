"""A sweep split over N processes or machines (`sweep --shard K/N`), and its parts joined (`merge`).

Shard K of N takes every N-th interval of the sorted list, starting at the K-th (round-robin, so
every shard gets short and long intervals alike). Shard 1 alone scores the references (post, pre)
and, with --soup, the soup: the other shards compute only their intervals, and each result is
written once. A part is an ordinary landscape CSV whose sidecar .meta.json adds "shard"; merge checks
that every part comes from the same pair, prompts and settings and that together they hold every
interval once, then writes the CSV a single process would have written.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from slr_core.errors import InputError
from slr_core.slr.intervals import parse_intervals
from slr_core.slr.landscape import METRICS, Landscape, Point

# Set by torchrun (and accelerate launch) in every process it starts; read by `--shard auto`.
RANK_ENV, WORLD_ENV, LOCAL_RANK_ENV = "RANK", "WORLD_SIZE", "LOCAL_RANK"
# What must agree between parts: the pair, the prompts as fed, and everything that sets the numbers.
IDENTITY_KEYS = (
    "pre_fingerprint",
    "post_fingerprint",
    "dtype",
    "device",
    "prompt_set",
    "num_prompts",
    "restore",
    "cache_context",
    "code_version",
    "schema",
)
# What must agree about the split itself.
SPLIT_KEYS = ("count", "intervals", "soup", "num_layers")


@dataclass(frozen=True)
class Shard:
    """Shard `index` (K, from 1) of `count` (N)."""

    index: int
    count: int

    @property
    def label(self) -> str:
        """'K/N', as typed after --shard."""
        return f"{self.index}/{self.count}"

    @property
    def is_first(self) -> bool:
        """Shard 1 also scores the references and the soup."""
        return self.index == 1

    def intervals(self, wanted: set[tuple[int, int]]) -> set[tuple[int, int]]:
        """This shard's share of `wanted`: every count-th of the sorted intervals, from the index-th."""
        return set(sorted(wanted)[self.index - 1 :: self.count])

    def part_path(self, out: str | Path) -> Path:
        """Where this shard writes its part: landscape.csv -> landscape.shard-K-of-N.csv."""
        out = Path(out)
        return out.with_name(f"{out.stem}.shard-{self.index}-of-{self.count}{out.suffix or '.csv'}")

    def provenance(self, intervals: str | None, soup: bool, num_layers: int) -> dict:
        """The sidecar entry merge reads: which shard, and of what split (--intervals in sorted form)."""
        spec = ",".join(f"{i}-{j}" for i, j in sorted(parse_intervals(intervals))) if intervals else "all"
        return {
            "index": self.index,
            "count": self.count,
            "intervals": spec,
            "soup": soup,
            "num_layers": num_layers,
        }


def parse_shard(text: str, name: str = "--shard") -> Shard:
    """'K/N' with 1 <= K <= N, or 'auto': K = RANK + 1 and N = WORLD_SIZE, as torchrun sets them."""
    text = str(text).strip()
    if text == "auto":
        return _shard_from_environment(name)
    parts = text.split("/")
    if len(parts) != 2 or not all(part.strip().isdecimal() for part in parts):
        raise InputError(f"{name} needs K/N (e.g. 2/4: the second of four parts) or auto, got {text!r}.")
    index, count = (int(part) for part in parts)
    if not 1 <= index <= count:
        raise InputError(f"{name} {text}: K must lie from 1 to N (the part's number, counted from 1).")
    return Shard(index, count)


def _shard_from_environment(name: str) -> Shard:
    rank, world = os.environ.get(RANK_ENV), os.environ.get(WORLD_ENV)
    if rank is None or world is None:
        raise InputError(
            f"{name} auto reads RANK and WORLD_SIZE, which torchrun sets; they are not set here: "
            "launch with torchrun --nproc_per_node N, or give K/N."
        )
    if not (rank.isdecimal() and world.isdecimal() and int(rank) < int(world)):
        raise InputError(f"{name} auto: RANK={rank!r} and WORLD_SIZE={world!r} do not make a shard.")
    return Shard(int(rank) + 1, int(world))


def local_device(device: str) -> str:
    """Under a launcher on a multi-GPU node, 'auto' means this process's own GPU (cuda:LOCAL_RANK)."""
    local = os.environ.get(LOCAL_RANK_ENV, "")
    if device != "auto" or not local.isdecimal():
        return device
    import torch

    return f"cuda:{local}" if torch.cuda.device_count() > int(local) else device


# ---------------------------------------------------------------- merge


@dataclass
class Part:
    """One shard's CSV, read back: its path, provenance and results."""

    path: Path
    meta: dict
    landscape: Landscape


def read_part(path: str | Path) -> Part:
    """A part written by `sweep --shard`, with its sidecar; InputError saying what is wrong if it is not one."""
    path = Path(path)
    meta_path = path.with_suffix(".meta.json")
    if not path.is_file() or not meta_path.is_file():
        raise InputError(
            f"{path}: no such part, or its {meta_path.name} is missing: give the CSVs that `sweep --shard K/N` wrote."
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{meta_path} cannot be read ({error}): sweep that part again.") from error
    if not isinstance(meta, dict) or not isinstance(meta.get("shard"), dict):
        raise InputError(
            f"{path} is not a shard's part (its {meta_path.name} has no 'shard'): give the CSVs that `sweep --shard K/N` wrote."
        )
    landscape = Landscape(int(meta["shard"]["num_layers"]), meta=meta)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            _place_row(landscape, row, path)
    return Part(path, meta, landscape)


def _place_row(landscape: Landscape, row: dict, path: Path) -> None:
    try:
        point = Point(*(float(row[m]) if row.get(m, "") != "" else None for m in METRICS))
        kind = row["kind"]
        if kind in ("post", "pre"):
            setattr(landscape, kind, point)
        elif kind == "interval":
            landscape.intervals[(int(row["start"]), int(row["end"]))] = point
        elif kind == "soup":
            landscape.soup[float(row["alpha"])] = point
        else:
            raise ValueError(f"unknown kind {kind!r}")
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"{path}: cannot read row {row} ({error}): the part is damaged; sweep it again."
        ) from error


def merge_parts(paths: list[str | Path]) -> Landscape:
    """The landscape of all parts together, once they provably make one whole sweep (else InputError)."""
    parts = [read_part(path) for path in paths]
    _check_same(parts)
    _check_shards(parts)
    first = next(part for part in parts if part.meta["shard"]["index"] == 1)
    shard = first.meta["shard"]
    meta = {key: value for key, value in first.meta.items() if key not in ("shard", "command")}
    merged = Landscape(shard["num_layers"], first.landscape.post, first.landscape.pre, meta=meta)
    merged.soup.update(first.landscape.soup)
    for part in parts:
        merged.intervals.update(part.landscape.intervals)
    _check_coverage(parts, merged, shard)
    merged.meta["merged_from"] = [
        {"part": str(part.path), "command": part.meta.get("command", "")} for part in parts
    ]
    return merged


def _check_same(parts: list[Part]) -> None:
    first = parts[0]
    for part in parts[1:]:
        for key in IDENTITY_KEYS:
            if first.meta.get(key) != part.meta.get(key):
                raise InputError(
                    f"{first.path} and {part.path} come from different sweeps: {key} is "
                    f"{first.meta.get(key)!r} in one and {part.meta.get(key)!r} in the other. Sweep every "
                    "part with the same pair, prompts and settings."
                )
        for key in SPLIT_KEYS:
            if first.meta["shard"].get(key) != part.meta["shard"].get(key):
                raise InputError(
                    f"{first.path} and {part.path} come from different splits: shard {key} is "
                    f"{first.meta['shard'].get(key)!r} in one and {part.meta['shard'].get(key)!r} in the "
                    "other. Give the parts of one `sweep --shard K/N` run."
                )


def _check_shards(parts: list[Part]) -> None:
    count, seen = parts[0].meta["shard"]["count"], {}
    for part in parts:
        index = part.meta["shard"]["index"]
        if index in seen:
            raise InputError(
                f"shard {index}/{count} is given twice ({seen[index]} and {part.path}): give each part once."
            )
        seen[index] = part.path
    missing = [index for index in range(1, count + 1) if index not in seen]
    if missing:
        labels = ", ".join(f"{index}/{count}" for index in missing)
        raise InputError(f"shard {labels} missing: run `sweep --shard K/N` for it too and give its part.")


def _check_coverage(parts: list[Part], merged: Landscape, shard: dict) -> None:
    wanted = _wanted(shard)
    counts: dict[tuple[int, int], int] = {}
    for part in parts:
        for key in part.landscape.intervals:
            counts[key] = counts.get(key, 0) + 1
    problems = []
    twice = sorted(key for key, times in counts.items() if times > 1)
    if twice:
        problems.append(f"in more than one part: {_listed(twice)}")
    absent = sorted(wanted - counts.keys())
    if absent:
        problems.append(f"in no part: {_listed(absent)}")
    extra = sorted(counts.keys() - wanted)
    if extra:
        problems.append(f"not asked for: {_listed(extra)}")
    if merged.post is None or merged.pre is None:
        problems.append("the post/pre references are missing from shard 1")
    if problems:
        raise InputError(
            f"The parts do not make one sweep: intervals {'; '.join(problems)}. Sweep the parts again."
        )


def _wanted(shard: dict) -> set[tuple[int, int]]:
    num_layers = int(shard["num_layers"])
    if shard["intervals"] == "all":
        return {(i, j) for i in range(num_layers) for j in range(i, num_layers)}
    return parse_intervals(shard["intervals"], num_layers)


def _listed(keys: list[tuple[int, int]], shown: int = 10) -> str:
    text = ", ".join(f"[{i}, {j}]" for i, j in keys[:shown])
    return text + (f" and {len(keys) - shown} more" if len(keys) > shown else "")
