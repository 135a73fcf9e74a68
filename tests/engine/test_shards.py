"""`sweep --shard K/N` and `merge`: a deterministic split, and parts that join into the single-process CSV."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slr_core.cli import main
from slr_core.engine.cached_sweep import all_intervals
from slr_core.engine.shards import Shard, merge_parts, parse_shard
from slr_core.errors import InputError
from slr_core.export.writer import write_csv
from slr_core.slr.landscape import Landscape, Point

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- the split


@pytest.mark.parametrize("count", [1, 2, 3, 7, 200])
def test_shards_cover_every_interval_exactly_once(count):
    wanted = all_intervals(18)
    parts = [Shard(index, count).intervals(wanted) for index in range(1, count + 1)]
    assert sum(len(part) for part in parts) == len(wanted)
    assert set().union(*parts) == wanted
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1  # round-robin: as even as it gets


def test_the_split_is_deterministic_and_round_robin():
    wanted = {(0, 0), (0, 1), (1, 1), (0, 2), (1, 2), (2, 2)}
    assert Shard(1, 2).intervals(wanted) == {(0, 0), (0, 2), (1, 2)}
    assert Shard(2, 2).intervals(set(reversed(sorted(wanted)))) == {(0, 1), (1, 1), (2, 2)}


def test_shard_parsing_and_part_names(monkeypatch):
    assert parse_shard("2/3") == Shard(2, 3) and parse_shard(" 1/1 ") == Shard(1, 1)
    assert Shard(2, 3).part_path("out/l.csv") == Path("out/l.shard-2-of-3.csv")
    for bad, message in (("0/2", "K must lie from 1 to N"), ("3/2", "K must lie"), ("2", "needs K/N")):
        with pytest.raises(InputError, match=message):
            parse_shard(bad)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(InputError, match="torchrun sets"):
        parse_shard("auto")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert parse_shard("auto") == Shard(2, 4)


def test_a_bad_shard_flag_exits_2_before_loading(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", "--shard", "5/4", "--out", "x.csv"])
    assert stopped.value.code == 2 and "K must lie from 1 to N" in capsys.readouterr().err


# ---------------------------------------------------------------- merge refusals (hand-made parts)

META = {
    "pre_fingerprint": "folder:aaa",
    "post_fingerprint": "folder:bbb",
    "dtype": "float32",
    "device": "cpu",
    "prompt_set": "p1",
    "num_prompts": 6,
    "restore": "layer",
    "cache_context": "ctx",
    "schema": 2,
}


def _part(folder: Path, index: int, count: int, intervals=None, **changes) -> Path:
    """A part as `sweep --shard index/count` of a 3-layer pair writes it (made-up numbers)."""
    shard = Shard(index, count)
    landscape = Landscape(3, meta={**META, **changes})
    point = Point(0.5, 1.0, 0.9, 0.45)
    if shard.is_first:
        landscape.post, landscape.pre = point, Point(0.1, 2.0, 0.2, 0.02)
    keys = shard.intervals(all_intervals(3)) if intervals is None else intervals
    landscape.intervals = {key: Point(key[0] / 10, key[1] / 10, 0.5, 0.25) for key in keys}
    landscape.meta["shard"] = shard.provenance(None, False, 3)
    return write_csv(landscape, shard.part_path(folder / "l.csv"))


def _merge_error(paths, capsys, tmp_path) -> str:
    assert main(["merge", *map(str, paths), "--out", str(tmp_path / "merged.csv")]) == 2
    return capsys.readouterr().err


def test_merge_refuses_parts_of_different_prompts(tmp_path, capsys):
    first, second = _part(tmp_path, 1, 2), _part(tmp_path, 2, 2, prompt_set="p2")
    error = _merge_error([first, second], capsys, tmp_path)
    assert "come from different sweeps: prompt_set is 'p1' in one and 'p2' in the other" in error


def test_merge_refuses_parts_of_different_pairs_and_splits(tmp_path, capsys):
    other = tmp_path / "other"
    error = _merge_error([_part(tmp_path, 1, 2), _part(other, 2, 2, post_fingerprint="x")], capsys, tmp_path)
    assert "post_fingerprint is 'folder:bbb' in one and 'x'" in error
    error = _merge_error([_part(tmp_path, 1, 2), _part(other, 2, 3)], capsys, tmp_path)
    assert "different splits: shard count is 2 in one and 3" in error


def test_merge_names_a_missing_or_repeated_part(tmp_path, capsys):
    first = _part(tmp_path, 1, 3)
    third = _part(tmp_path, 3, 3)
    assert "shard 2/3 missing" in _merge_error([first, third], capsys, tmp_path)
    copy = tmp_path / "copy.csv"
    shutil.copy(first, copy)
    shutil.copy(first.with_suffix(".meta.json"), copy.with_suffix(".meta.json"))
    assert "shard 1/3 is given twice" in _merge_error([first, copy, third], capsys, tmp_path)


def test_merge_names_intervals_in_two_parts_or_in_none(tmp_path, capsys):
    first = _part(tmp_path, 1, 2, intervals={(0, 0), (0, 1), (0, 2)})
    second = _part(tmp_path, 2, 2, intervals={(0, 2), (1, 1), (1, 2)})
    error = _merge_error([first, second], capsys, tmp_path)
    assert "in more than one part: [0, 2]" in error and "in no part: [2, 2]" in error


def test_merge_refuses_a_file_that_is_not_a_part(tmp_path, capsys):
    plain = tmp_path / "plain.csv"
    plain.write_text("kind,start\n")
    assert "no such part, or its plain.meta.json is missing" in _merge_error([plain], capsys, tmp_path)
    plain.with_suffix(".meta.json").write_text(json.dumps(META))
    assert "is not a shard's part" in _merge_error([plain], capsys, tmp_path)


def test_merged_hand_made_parts_give_the_whole_landscape(tmp_path):
    merged = merge_parts([_part(tmp_path, index, 3) for index in (3, 1, 2)])
    assert merged.intervals.keys() == all_intervals(3) and merged.post is not None
    assert "shard" not in merged.meta and len(merged.meta["merged_from"]) == 3


# ---------------------------------------------------------------- two processes under torchrun


def _run(command: list[str], cache: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SLR_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_torchrun_processes_merge_into_the_single_process_csv(tiny_paths, tmp_path):
    pre, post = tiny_paths("llama")
    pair = ["--pre", str(pre), "--post", str(post), "--prompts", str(_prompts(tmp_path)), "--soup"]
    single = tmp_path / "single.csv"
    _run([sys.executable, "-m", "slr_core", "sweep", *pair, "--out", str(single)], tmp_path / "cache-single")
    parts = tmp_path / "parts" / "l.csv"
    torchrun = shutil.which("torchrun")  # the same program as python -m torch.distributed.run
    launcher = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    launcher += ["--standalone", "--nproc_per_node", "2"]
    sweep = ["--module", "slr_core", "sweep", *pair, "--out", str(parts), "--shard", "auto"]
    _run(launcher + sweep, tmp_path / "cache-shards")
    written = sorted(parts.parent.glob("l.shard-*-of-2.csv"))
    assert [path.name for path in written] == ["l.shard-1-of-2.csv", "l.shard-2-of-2.csv"]
    second = written[1].read_text()
    assert "post" not in second and "soup" not in second  # references and soup: shard 1 only
    merged = tmp_path / "merged.csv"
    assert main(["merge", *map(str, written), "--out", str(merged)]) == 0
    assert merged.read_bytes() == single.read_bytes()  # byte for byte
    meta = json.loads(merged.with_suffix(".meta.json").read_text())
    assert meta["prompts"] == str(_prompts(tmp_path)) and "--shard" not in meta["command"]


def _prompts(folder: Path) -> Path:
    """Eight CRC prompts: enough rows for the split to change batch shapes, few enough for the CPU."""
    from slr_core.crc.prompts import default_prompts

    path = folder / "prompts.json"
    unique = {p.instruction: p for p in default_prompts()}  # a prompt set names each instruction once
    rows = [{"instruction": p.instruction, "valid": list(p.valid)} for p in list(unique.values())[:8]]
    path.write_text(json.dumps(rows))
    return path
