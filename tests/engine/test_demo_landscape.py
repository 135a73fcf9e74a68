"""The demo landscape shipped in assets/ is the demo pair's real landscape: recompute a sample."""

import random

import pytest

from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.cached_sweep import context_id, shipped_points
from slr_core.engine.sweep import sweep_intervals


@pytest.mark.real
def test_shipped_demo_landscape_matches_recomputed_cells(demo_pair):
    encoded = encode_prompts(demo_pair.tokenizer, default_prompts())
    shipped = shipped_points(context_id(demo_pair, encoded))
    assert len([name for name in shipped if name.startswith("interval/")]) == 171
    cells = set(random.Random(0).sample([(i, j) for i in range(18) for j in range(i, 18)], 4))
    for result in sweep_intervals(demo_pair, encoded, cells):
        quality, diversity, stop, strict = result.per_prompt.mean(dim=0).tolist()[:4]
        point = shipped[f"interval/{result.start}-{result.end}"]
        assert quality == pytest.approx(point.quality, abs=1e-5)
        assert diversity == pytest.approx(point.diversity, abs=1e-5)
        assert stop == pytest.approx(point.stop, abs=1e-5)
        assert strict == pytest.approx(point.strict_quality, rel=1e-4, abs=1e-9)
