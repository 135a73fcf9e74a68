"""The CLI's files and every user error it can meet, each with a specific message."""

import csv
import json

import pytest
from tiny_pairs import build_tokenizer
from transformers import AutoModelForCausalLM, GPT2Config

from slr_core.cli import main
from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.sweep import sweep_intervals
from slr_core.errors import IncompatibleModelsError, SourceError, UnsupportedArchitectureError
from slr_core.models.loading import check_compatible, load_pair
from slr_core.models.settings import Settings
from slr_core.models.sources import parse_source
from slr_core.slr.intervals import parse_intervals
from slr_core.slr.landscape import Landscape, Point


def test_sweep_writes_the_documented_csv(tiny_paths, tmp_path):
    pre, post = tiny_paths("qwen3")
    out = tmp_path / "landscape.csv"
    code = main(["sweep", "--pre", str(pre), "--post", str(post), "--out", str(out), "--soup"])
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == [
        "kind",
        "start",
        "end",
        "alpha",
        "quality",
        "diversity",
        "stop",
        "strict_quality",
        "answer_diversity",
    ]
    kinds = [row["kind"] for row in rows]
    assert kinds.count("post") == 1 and kinds.count("pre") == 1
    assert kinds.count("interval") == 10 and kinds.count("soup") == 21
    interval = next(row for row in rows if row["kind"] == "interval")
    assert interval["alpha"] == "" and interval["start"] == "0" and interval["end"] == "0"
    assert all(0.0 <= float(row["quality"]) <= 1.0 for row in rows)
    assert all(0.0 <= float(row["stop"]) <= 1.0 for row in rows)
    assert all(0.0 < float(row["strict_quality"]) <= float(row["quality"]) for row in rows)
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["post_fingerprint"].startswith("folder:") and meta["dtype"] == "float32"
    assert meta["prompts"] == "paper"  # the prompt set by name: the page labels shipped landscapes with it


def test_sweep_limited_to_listed_intervals(tiny_paths, tmp_path):
    pre, post = tiny_paths("llama")
    out = tmp_path / "some.csv"
    assert (
        main(["sweep", "--pre", str(pre), "--post", str(post), "--out", str(out), "--intervals", "0-1,3"])
        == 0
    )
    rows = [r for r in csv.DictReader(out.open()) if r["kind"] == "interval"]
    assert {(r["start"], r["end"]) for r in rows} == {("0", "1"), ("3", "3")}


def test_prompts_open_names_the_shipped_open_answers_set():
    from slr_core import cli
    from slr_core.crc.prompt_sets import open_prompts

    args = cli.build_parser().parse_args(["sweep", "--prompts", "open"])
    assert cli._prompt_set(args) == open_prompts()
    args = cli.build_parser().parse_args(["best"])
    assert len(cli._prompt_set(args)) == 40  # the paper's set by default


def test_prompts_command_writes_ids_fed_to_the_model(tiny_paths, tmp_path):
    _, post = tiny_paths("llama")
    out = tmp_path / "prompts.json"
    assert main(["prompts", "--model", str(post), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 40 and set(rows[0]) == {"instruction", "valid", "input_ids"}
    assert all(isinstance(i, int) for i in rows[0]["input_ids"])


@pytest.mark.parametrize("rule", ["strict", "paper", "answer"])
def test_best_prints_every_rules_pick_and_selects_by_rule(tiny_paths, capsys, rule):
    pre, post = tiny_paths("llama")
    assert main(["best", "--pre", str(pre), "--post", str(post), "--rule", rule, "--q-fraction", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "strict rule" in out and "paper rule" in out and "answer rule: max answer D" in out
    landscape = _cached_landscape(pre, post)
    best = landscape.best_interval(landscape.q_min(0.5, rule), rule)
    assert out.strip().splitlines()[-1] == f"selected ({rule} rule): [{best[0]}, {best[1]}]"


def _cached_landscape(pre, post):
    from slr_core.crc.prompts import default_prompts, encode_prompts
    from slr_core.engine.cached_sweep import complete, survey

    pair = load_pair(str(pre), str(post), Settings())
    return complete(survey(pair, encode_prompts(pair.tokenizer, default_prompts())))


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["sweep", "--pre", str(tmp_path / "missing"), "--post", "x/y", "--out", "a.csv"]) == 2
    assert "Model folder not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "spec,message",
    [
        ("", "empty"),
        ("./nowhere", "not found"),
        ("weights.gguf", "GGUF file not found"),
        ("not a hub id!", "valid hub id"),
        ("demo:other", "Unknown demo model"),
    ],
)
def test_bad_sources(spec, message):
    with pytest.raises(SourceError, match=message):
        parse_source(spec)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(SourceError, match="no config.json"):
        parse_source(str(tmp_path))


def test_unreachable_hub_id_gives_an_offline_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError, match="unreachable"):
        load_pair("nobody-here/no-such-model", "nobody-here/no-such-model-it", Settings(device="cpu"))


def test_incompatible_pairs_say_what_differs(tiny_paths):
    from transformers import AutoModelForCausalLM as Auto

    llama_pre, _ = tiny_paths("llama")
    qwen_pre, _ = tiny_paths("qwen2")
    llama, qwen = Auto.from_pretrained(llama_pre), Auto.from_pretrained(qwen_pre)
    with pytest.raises(IncompatibleModelsError, match="LlamaForCausalLM.*Qwen2ForCausalLM"):
        check_compatible(llama, qwen)
    shallow = Auto.from_pretrained(llama_pre, num_hidden_layers=3)
    with pytest.raises(IncompatibleModelsError, match="3 decoder layers, post-trained has 4"):
        check_compatible(shallow, llama)
    narrow = Auto.from_pretrained(llama_pre, intermediate_size=48, ignore_mismatched_sizes=True)
    with pytest.raises(IncompatibleModelsError, match="mlp.gate_proj.weight"):
        check_compatible(narrow, llama)


def test_a_model_the_branch_layout_cannot_replay_is_refused_by_name(tmp_path):
    # GPT-2 adds absolute position embeddings before its first layer, out of the layers' reach:
    # answer branches would sit at the wrong positions, so the sweep must refuse, not mis-score.
    tokenizer = build_tokenizer(tmp_path / "tokenizer")
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(tokenizer))
    for name in ("pre", "post"):
        AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    pair = load_pair(str(tmp_path / "pre"), str(tmp_path / "post"), Settings(device="cpu"))
    encoded = encode_prompts(pair.tokenizer, default_prompts()[:2])
    with pytest.raises(UnsupportedArchitectureError, match="GPT2LMHeadModel.*branches"):
        list(sweep_intervals(pair, encoded, {(0, 1)}))


def test_devices_and_dtypes_resolve():
    settings = Settings(device="cpu")
    assert settings.torch_device.type == "cpu" and str(settings.torch_dtype) == "torch.float32"
    assert str(Settings(device="cpu", dtype="bfloat16").torch_dtype) == "torch.bfloat16"
    with pytest.raises(SourceError, match="Unknown device"):
        Settings(device="tpu")
    with pytest.raises(SourceError, match="Unknown dtype"):
        Settings(dtype="int8")


def test_selection_on_a_hand_made_landscape():
    landscape = Landscape(4, post=Point(0.9, 0.2), pre=Point(0.3, 1.5))
    landscape.intervals = {
        (0, 0): Point(0.88, 0.3),
        (1, 2): Point(0.82, 0.9),  # best: highest D with Q >= 0.81
        (2, 3): Point(0.6, 1.2),  # more diverse but below q_min
        (3, 3): Point(0.85, 0.5),
    }
    landscape.soup = {0.0: Point(0.9, 0.2), 0.5: Point(0.85, 0.6), 1.0: Point(0.3, 1.5)}
    assert landscape.q_min(0.9, "paper") == pytest.approx(0.81)
    assert landscape.best_interval(0.81, "paper") == (1, 2)
    assert landscape.best_alpha(0.81, "paper") == 0.5
    assert landscape.pareto_front("paper") == [(0, 0), (3, 3), (1, 2), (2, 3)]
    assert landscape.controls((1, 2)) == {"early": (0, 1), "late": (2, 3)}
    assert landscape.best_interval(0.95, "paper") is None
    assert not landscape.has_strict and list(landscape.summary(0.9)["rules"]) == ["paper"]


def test_strict_rule_thresholds_strict_quality():
    landscape = Landscape(4, post=Point(0.9, 0.2, 0.9, 0.81), pre=Point(0.3, 1.5, 0.1, 0.03))
    landscape.intervals = {
        (1, 2): Point(0.88, 0.9, 0.05, 0.044),  # the paper's pick: first token fine, never ends
        (3, 3): Point(0.85, 0.5, 0.95, 0.8075),  # strict pick: answers and ends
        (0, 0): Point(0.89, 0.3, 0.99, 0.8811),
    }
    assert landscape.has_strict
    assert landscape.q_min(0.9, "strict") == pytest.approx(0.729)
    assert landscape.best_interval(landscape.q_min(0.9, "strict"), "strict") == (3, 3)
    assert landscape.best_interval(landscape.q_min(0.9, "paper"), "paper") == (1, 2)
    assert landscape.pareto_front("strict") == [(0, 0), (3, 3), (1, 2)]
    rules = landscape.summary(0.9)["rules"]
    assert rules["strict"]["best"]["interval"] == [3, 3] and rules["paper"]["best"]["interval"] == [1, 2]
    assert rules["strict"]["best"]["stop"] == 0.95
    with pytest.raises(ValueError, match="strict, paper"):
        landscape.q_min(0.9, "first-token")
    assert parse_intervals("0-1, 3", 4) == {(0, 1), (3, 3)}


# ---------------------------------------------------------------- --device-map


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "neither a placement strategy (auto, balanced"),
        ("{not json", "cannot read"),
        ("[]", "must hold a non-empty JSON object"),
        ('{"model.layers.0": "gpu7"}', "module 'model.layers.0' is mapped to 'gpu7'"),
    ],
)
def test_a_bad_device_map_exits_2_with_what_to_give(tmp_path, capsys, content, message):
    target = tmp_path / "map.json"
    if content is not None:
        target.write_text(content)
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", "--device-map", str(target), "--out", str(tmp_path / "l.csv")])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_a_device_map_file_places_the_pair(tiny_paths, tmp_path):
    pre, post = tiny_paths("llama")
    device_map = tmp_path / "map.json"
    device_map.write_text(json.dumps({"": "cpu"}))
    out = tmp_path / "l.csv"
    pair = ["--pre", str(pre), "--post", str(post), "--device-map", str(device_map)]
    assert main(["sweep", *pair, "--intervals", "0-1", "--out", str(out)]) == 0
    assert [r["kind"] for r in csv.DictReader(out.open())] == ["post", "pre", "interval"]
