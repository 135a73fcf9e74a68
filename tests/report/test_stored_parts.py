"""benchmarks/stored_parts.py join: parts of one map from several engine versions become one landscape that
says which version measured each interval, and parts that are not of one map are refused."""

import subprocess
import sys
from pathlib import Path

from slr_core.export.writer import write_csv
from slr_core.report.difference import read_landscape
from slr_core.slr.landscape import Landscape, Point

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "stored_parts.py"
META = {"pair": "A + B", "prompt_set": "abc", "cache_context": "ctx", "num_layers": 3, "prompts": "open"}


def _part(path: Path, version: str, cells: dict, **meta) -> str:
    post, pre = Point(0.5, 1.0, 0.9, 0.45, 1.0), Point(0.1, 1.1, 0.2, 0.02, 1.2)
    landscape = Landscape(3, post, pre, dict(cells), meta={**META, "code_version": version, **meta})
    return str(write_csv(landscape, path))


def _join(out: Path, *parts: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "join", str(out), *parts]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_join_keeps_each_intervals_code_version_and_refuses_parts_of_other_maps(tmp_path):
    first = _part(
        tmp_path / "a.csv",
        "v1",
        {(0, 0): Point(0.4, 1.0, 0.8, 0.3, 0.9), (0, 1): Point(0.3, 1.2, 0.7, 0.2, 1.1)},
    )
    second = _part(
        tmp_path / "b.csv",
        "v2",
        {(0, 1): Point(0.3, 1.2, 0.7, 0.2, 1.1), (1, 2): Point(0.2, 1.3, 0.5, 0.1, 1.3)},
    )
    assert _join(tmp_path / "joined.csv", first, second).returncode == 0
    joined = read_landscape(tmp_path / "joined.csv")
    assert set(joined.intervals) == {(0, 0), (0, 1), (1, 2)} and joined.post.quality == 0.5
    assert joined.meta["intervals_by_code_version"] == {"v1": ["0-0", "0-1"], "v2": ["1-2"]}
    assert joined.meta["references_code_version"] == "v1" and "code_version" not in joined.meta
    # An interval the parts disagree on by more than 1e-4, or a part of another prompt set: refused.
    other = _part(tmp_path / "c.csv", "v2", {(0, 1): Point(0.3002, 1.2, 0.7, 0.2, 1.1)})
    refused = _join(tmp_path / "no.csv", first, other)
    assert refused.returncode == 2 and "interval (0, 1): quality" in refused.stderr
    foreign = _part(tmp_path / "d.csv", "v2", {(1, 2): Point(0.2, 1.3, 0.5, 0.1, 1.3)}, prompt_set="xyz")
    refused = _join(tmp_path / "no.csv", first, foreign)
    assert refused.returncode == 2 and "prompt_set" in refused.stderr
    assert not (tmp_path / "no.csv").exists()
