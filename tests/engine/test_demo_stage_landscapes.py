"""The demo's three stage pairs: presets, sources, and their shipped landscapes recomputed on a sample."""

import random

import pytest

from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.cached_sweep import SHIPPED_DIR, context_id, shipped_points, stored_landscape
from slr_core.errors import SourceError
from slr_core.models.presets import DEMO_PRESETS, PRESETS
from slr_core.models.sources import parse_source
from slr_core.report.difference import read_landscape

STAGE_PAIRS = {("demo:pre", "demo:post"): "demo.csv", ("demo:pre", "demo:dpo"): "demo-dpo.csv"}
STAGE_PAIRS[("demo:post", "demo:dpo")] = "demo-sft-dpo.csv"
SWEEP = "python -m slr_core sweep --pre {} --post {} --soup --device cpu --dtype float32 --out assets/landscapes/{}"


def shipped(sources: tuple[str, str], with_name: bool = True):
    """The pair's CSV, or a strict xfail naming the command that makes it (a missing asset never passes)."""
    name = STAGE_PAIRS[sources]
    missing = not (SHIPPED_DIR / name).is_file()
    reason = f"{name} is not shipped yet: run `{SWEEP.format(*sources, name)}`"
    values = (sources, name) if with_name else (sources,)
    return pytest.param(*values, marks=pytest.mark.xfail(missing, reason=reason, strict=True))


def test_three_demo_presets_name_each_stage_pair():
    assert {(p.pre, p.post) for p in DEMO_PRESETS} == set(STAGE_PAIRS)
    assert all(p.offline and PRESETS[p.name] is p for p in DEMO_PRESETS)
    assert parse_source("demo:dpo").location == "dpo"
    with pytest.raises(SourceError, match="demo:dpo"):
        parse_source("demo:rlhf")


@pytest.mark.parametrize(("sources", "name"), [shipped(sources) for sources in sorted(STAGE_PAIRS)])
def test_each_stage_pair_ships_a_full_landscape_of_the_same_prompts(sources, name):
    landscape = read_landscape(SHIPPED_DIR / name)
    assert (landscape.meta["pre"], landscape.meta["post"]) == sources
    assert len(landscape.intervals) == 171 and landscape.has_strict and landscape.post is not None
    assert landscape.meta["prompt_set"] == read_landscape(SHIPPED_DIR / "demo.csv").meta["prompt_set"]


@pytest.fixture(
    scope="module", params=[shipped(pair, False) for pair in STAGE_PAIRS if pair[1] == "demo:dpo"], ids=str
)
def stage_pair(request):
    from conftest import USER_CACHE

    from slr_core.cache import CACHE_ENV
    from slr_core.models.loading import load_pair
    from slr_core.models.settings import Settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(USER_CACHE))
        return load_pair(*request.param, Settings(device="cpu"))


@pytest.mark.real
def test_shipped_stage_landscape_matches_recomputed_cells(stage_pair):
    from slr_core.engine.sweep import sweep_intervals

    encoded = encode_prompts(stage_pair.tokenizer, default_prompts())
    shipped = shipped_points(context_id(stage_pair, encoded))
    assert len([name for name in shipped if name.startswith("interval/")]) == 171
    # The page opens on it at once: the stored landscape is complete without a sweep.
    assert len(stored_landscape(stage_pair, encoded).intervals) == 171
    cells = set(random.Random(1).sample([(i, j) for i in range(18) for j in range(i, 18)], 3))
    for result in sweep_intervals(stage_pair, encoded, cells):
        quality, diversity, stop, strict = result.per_prompt.mean(dim=0).tolist()[:4]
        point = shipped[f"interval/{result.start}-{result.end}"]
        assert quality == pytest.approx(point.quality, abs=1e-5)
        assert diversity == pytest.approx(point.diversity, abs=1e-5)
        assert stop == pytest.approx(point.stop, abs=1e-5)
        assert strict == pytest.approx(point.strict_quality, rel=1e-4, abs=1e-9)
