"""The open-answers landscape shipped in assets/ is the demo pair's whole map of the open set, joined
from the committed parts of the engine versions that measured it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slr_core.crc.prompt_sets import named_prompts
from slr_core.crc.prompts import encode_prompts
from slr_core.engine.cached_sweep import SHIPPED_DIR, context_id, shipped_points
from slr_core.report.difference import read_landscape

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = SHIPPED_DIR / "demo-open.csv"


def test_the_shipped_open_map_is_the_join_of_its_committed_parts(tmp_path):
    meta = json.loads(SHIPPED.with_suffix(".meta.json").read_text())
    parts = [ROOT / part for part in meta["joined_from"]]
    joined = tmp_path / "joined.csv"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "stored_parts.py"),
        "join",
        str(joined),
        *map(str, parts),
    ]
    subprocess.run(command, check=True, capture_output=True)
    assert joined.read_bytes() == SHIPPED.read_bytes()
    by_version = meta["intervals_by_code_version"]
    names = [name for version in by_version.values() for name in version]
    assert len(names) == len(set(names)) == 171  # every interval once, each with the version that measured it
    landscape = read_landscape(SHIPPED)
    assert len(landscape.intervals) == 171 and landscape.post is not None and landscape.pre is not None
    assert all(point.answer_diversity is not None for point in landscape.intervals.values())


@pytest.mark.real
def test_the_shipped_open_map_matches_this_codes_encoding_of_the_demo_pair(demo_pair):
    encoded = encode_prompts(demo_pair.tokenizer, named_prompts("open"))
    shipped = shipped_points(context_id(demo_pair, encoded))  # fingerprints, prompts, trie layout, end tokens
    intervals = {name: point for name, point in shipped.items() if name.startswith("interval/")}
    assert len(intervals) == 171 and {"post", "pre"} <= set(shipped)
    landscape = read_landscape(SHIPPED)
    assert landscape.meta["prompts"] == "open" and landscape.meta["num_prompts"] == len(encoded)
    assert (landscape.meta["pre"], landscape.meta["post"]) == ("demo:pre", "demo:post")
    assert landscape.post.strict_quality == shipped["post"].strict_quality
