"""Two landscapes on one grid: `diff` and the pair comparison, on real tiny sweeps and the shipped CSVs."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from slr_core.cli import main
from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.cached_sweep import SHIPPED_DIR, complete, survey
from slr_core.errors import InputError
from slr_core.export.writer import write_csv
from slr_core.models.loading import load_pair
from slr_core.models.settings import Settings
from slr_core.report import pair_figures
from slr_core.report.difference import Difference, picks, read_landscape
from slr_core.serve import pair_compare
from slr_core.slr.landscape import METRICS, RULES


@pytest.fixture(scope="module")
def sweeps(tiny_paths, tmp_path_factory) -> dict:
    """Landscape CSVs of real tiny sweeps: a pair, the same models the other way round, and mismatches."""
    pre, post = tiny_paths("llama")
    forward = load_pair(str(pre), str(post), Settings(device="cpu"))
    backward = load_pair(str(post), str(pre), Settings(device="cpu"))
    encoded = encode_prompts(forward.tokenizer, default_prompts())
    folder = tmp_path_factory.mktemp("landscapes")
    runs = {
        "a": (forward, encoded, "layer"),
        "b": (backward, encoded, "layer"),
        "mlp": (backward, encoded, "mlp"),
        "fewer": (backward, encoded.subset(list(range(10))), "layer"),
    }
    paths = {}
    for name, (pair, prompts, mode) in runs.items():
        landscape = complete(survey(pair, prompts, use_cache=False, mode=mode))
        paths[name] = write_csv(landscape, folder / f"{name}.csv")
    # A shallower landscape: the same numbers without the last layer's intervals, as a depth-3 pair's.
    shallow = read_landscape(paths["b"])
    shallow.intervals = {k: v for k, v in shallow.intervals.items() if k[1] < shallow.num_layers - 1}
    shallow.num_layers -= 1
    paths["shallow"] = write_csv(shallow, folder / "shallow.csv")
    return paths


def test_read_landscape_round_trips_a_sweep(sweeps):
    landscape = read_landscape(sweeps["a"])
    assert landscape.num_layers == 4 and len(landscape.intervals) == 10
    assert landscape.meta["restore"] == "layer" and landscape.post is not None and landscape.pre is not None


def test_differences_equal_second_minus_first_cell_by_cell(sweeps):
    first, second = read_landscape(sweeps["a"]), read_landscape(sweeps["b"])
    difference = Difference(first, second)
    rows = difference.rows()
    assert len(rows) == 10
    for row in rows:
        key = (row["start"], row["end"])
        for metric in METRICS:
            naive = getattr(second.intervals[key], metric) - getattr(first.intervals[key], metric)
            assert float(row[f"{metric}_delta"]) == pytest.approx(naive, abs=1e-7)
            assert difference.matrix(metric)[key] == pytest.approx(naive, abs=1e-12)
    # The two pairs do differ (tiny random models: small, but far above float noise).
    assert max(abs(float(row[f"{m}_delta"])) for row in rows for m in METRICS) > 1e-5
    lowest = difference.largest("diversity", 3)
    deltas = sorted(float(row["diversity_delta"]) for row in rows)
    assert [delta for _, delta in lowest] == pytest.approx(deltas[:3])


@pytest.mark.parametrize(
    ("other", "message"),
    [("mlp", "restore modes"), ("fewer", "prompt sets"), ("shallow", "same interval grid")],
)
def test_mismatched_landscapes_are_refused(sweeps, other, message):
    with pytest.raises(InputError, match=message):
        Difference(read_landscape(sweeps["a"]), read_landscape(sweeps[other]))


def test_cli_diff_writes_deltas_and_prints_both_picks(sweeps, tmp_path, capsys):
    out = tmp_path / "d.csv"
    assert main(["diff", str(sweeps["a"]), str(sweeps["b"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 10 and "diversity_delta" in rows[0]
    for name, path in (("A", sweeps["a"]), ("B", sweeps["b"])):
        landscape = read_landscape(path)
        for rule, best in picks(landscape, 0.9).items():
            block = printed.split(f"{name}:")[1]
            assert f"{rule} rule: [{best[0]}, {best[1]}]" in block if best else "no interval" in block


@pytest.mark.parametrize("other", ["mlp", "fewer", "shallow"])
def test_cli_diff_exits_2_on_mismatch(sweeps, tmp_path, capsys, other):
    out = tmp_path / "d.csv"
    assert main(["diff", str(sweeps["a"]), str(sweeps[other]), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err and not out.exists()


def test_cli_diff_refuses_a_missing_file(tmp_path, capsys):
    assert (
        main(["diff", str(tmp_path / "no.csv"), str(tmp_path / "no.csv"), "--out", str(tmp_path / "d.csv")])
        == 2
    )
    assert "no such landscape" in capsys.readouterr().err


def test_shipped_landscapes_of_different_restore_modes_are_refused(tmp_path):
    with pytest.raises(InputError, match="restore modes"):
        Difference(read_landscape(SHIPPED_DIR / "demo.csv"), read_landscape(SHIPPED_DIR / "demo-mlp.csv"))


def test_difference_map_and_fronts_show_what_they_say(sweeps):
    first, second = read_landscape(sweeps["a"]), read_landscape(sweeps["b"])
    difference = Difference(first, second, ("one", "two"))
    for metric in ("diversity", "strict_quality", "stop"):
        figure = pair_figures.difference_heatmap(difference, metric, ("one", "two"))
        z = np.asarray(figure.data[0].z, dtype=float)
        expected = second.matrix(metric) - first.matrix(metric)
        assert np.allclose(z, expected, equal_nan=True)
        assert figure.data[0].zmid == 0 and figure.data[0].zmax == pytest.approx(np.nanmax(np.abs(expected)))
    assert first.usable_rules() == list(RULES)
    for rule in RULES:
        figure = pair_figures.fronts_figure((first, second), ("one", "two"), rule, 0.9)
        for landscape, name in ((first, "one"), (second, "two")):
            front = next(t for t in figure.data if t.name == f"{name}: Pareto front")
            front_x = [landscape.intervals[k].rule_diversity(rule) for k in landscape.pareto_front(rule)]
            assert list(front.x) == front_x
            best = picks(landscape, 0.9)[rule]
            if best is not None:
                star = next(t for t in figure.data if t.name == f"{name}: pick [{best[0]}, {best[1]}]")
                assert star.x[0] == landscape.intervals[best].rule_diversity(rule)
    table = pair_figures.picks_markdown(difference, ("one", "two"), 0.9)
    for landscape, name in ((first, "one"), (second, "two")):
        for rule, best in picks(landscape, 0.9).items():
            cell = f"[{best[0]}, {best[1]}]" if best else "none reaches q_min"
            assert f"| {name} | {rule} | {cell} |" in table
        assert "answer" in picks(landscape, 0.9)  # a sweep now computes answer D: every rule is offered


def test_page_lists_only_shipped_landscapes_and_refuses_other_paths(sweeps):
    choices = pair_compare.second_pair_choices()
    paths = [path for _, path in choices]
    assert str(SHIPPED_DIR / "demo.csv") in paths and all(p.startswith(str(SHIPPED_DIR)) for p in paths)
    with pytest.raises(InputError, match="Pick a second pair"):
        pair_compare.second_landscape("/etc/passwd")
    with pytest.raises(InputError, match="Pick a second pair"):
        pair_compare.second_landscape(str(sweeps["b"]))


def test_shipped_choices_name_their_prompt_set_unless_it_is_the_papers(tmp_path):
    for name, prompts in (("digits", None), ("open", "open"), ("mine", "/data/my-set.json")):
        meta = {"pair": "A + B", "restore": "layer", **({"prompts": prompts} if prompts else {})}
        (tmp_path / f"{name}.meta.json").write_text(json.dumps(meta))
    labels = [label for label, _ in pair_compare.second_pair_choices(tmp_path)]
    assert labels == [
        "A + B (whole layers)",
        "A + B (whole layers, my-set.json prompts)",
        "A + B (whole layers, open prompts)",
    ]


def test_page_comparison_refuses_another_depth_and_draws_nine_maps(sweeps):
    first, second = read_landscape(sweeps["a"]), read_landscape(sweeps["b"])
    drawn = pair_compare.compare_with(first, "first", second, "second", 0.9, "strict")
    assert len(drawn["maps"]) == 9 and "second" in drawn["note"]
    delta = np.asarray(drawn["maps"][2].data[0].z, dtype=float)
    assert np.allclose(delta, second.matrix("diversity") - first.matrix("diversity"), equal_nan=True)
    with pytest.raises(InputError, match="same interval grid"):
        pair_compare.compare_with(first, "first", read_landscape(sweeps["shallow"]), "shallow", 0.9, "strict")
    demo = read_landscape(SHIPPED_DIR / "demo.csv")
    with pytest.raises(InputError, match="4 layers and second pair has 18"):
        pair_compare.compare_with(first, "first", demo, "demo", 0.9, "strict")


def test_meta_without_provenance_is_refused(sweeps, tmp_path):
    bare = tmp_path / "bare.csv"
    bare.write_text(sweeps["b"].read_text())
    meta = json.loads(sweeps["b"].with_suffix(".meta.json").read_text())
    del meta["prompt_set"]
    bare.with_suffix(".meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="prompt_set"):
        Difference(read_landscape(sweeps["a"]), read_landscape(bare))
    assert not math.isnan(read_landscape(bare).post.quality)
