"""The CLI's files and every user error it can meet, each with a specific message."""

import csv
import json

import pytest
from transformers import AutoModelForCausalLM, GPT2Config

from slr_core.cli import main
from slr_core.errors import IncompatibleModelsError, SourceError, UnsupportedArchitectureError
from slr_core.landscape import Landscape, Point, parse_intervals
from slr_core.models import Settings, check_compatible, load_pair, parse_source


def test_sweep_writes_the_documented_csv(tiny_paths, tmp_path):
    pre, post = tiny_paths("qwen3")
    out = tmp_path / "landscape.csv"
    code = main(["sweep", "--pre", str(pre), "--post", str(post), "--out", str(out), "--soup"])
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["kind", "start", "end", "alpha", "quality", "diversity"]
    kinds = [row["kind"] for row in rows]
    assert kinds.count("post") == 1 and kinds.count("pre") == 1
    assert kinds.count("interval") == 10 and kinds.count("soup") == 21
    interval = next(row for row in rows if row["kind"] == "interval")
    assert interval["alpha"] == "" and interval["start"] == "0" and interval["end"] == "0"
    assert all(0.0 <= float(row["quality"]) <= 1.0 for row in rows)
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["post_fingerprint"].startswith("folder:") and meta["dtype"] == "float32"


def test_sweep_limited_to_listed_intervals(tiny_paths, tmp_path):
    pre, post = tiny_paths("llama")
    out = tmp_path / "some.csv"
    assert (
        main(["sweep", "--pre", str(pre), "--post", str(post), "--out", str(out), "--intervals", "0-1,3"])
        == 0
    )
    rows = [r for r in csv.DictReader(out.open()) if r["kind"] == "interval"]
    assert {(r["start"], r["end"]) for r in rows} == {("0", "1"), ("3", "3")}


def test_prompts_command_writes_ids_fed_to_the_model(tiny_paths, tmp_path):
    _, post = tiny_paths("llama")
    out = tmp_path / "prompts.json"
    assert main(["prompts", "--model", str(post), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 40 and set(rows[0]) == {"instruction", "valid", "input_ids"}
    assert all(isinstance(i, int) for i in rows[0]["input_ids"])


def test_best_prints_the_selection(tiny_paths, capsys):
    pre, post = tiny_paths("llama")
    assert main(["best", "--pre", str(pre), "--post", str(post)]) == 0
    out = capsys.readouterr().out
    assert "post-trained: Q_CRC" in out and ("best interval [" in out or "no interval reaches" in out)


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


def test_unknown_architecture_is_named(tmp_path):
    model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64))
    model.save_pretrained(tmp_path / "gpt2")
    from slr_core.models import decoder_layers

    with pytest.raises(UnsupportedArchitectureError, match="GPT2LMHeadModel"):
        decoder_layers(model)


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
    assert landscape.q_min() == pytest.approx(0.81)
    assert landscape.best_interval(0.81) == (1, 2)
    assert landscape.best_alpha(0.81) == 0.5
    assert landscape.pareto_front() == [(0, 0), (3, 3), (1, 2), (2, 3)]
    assert landscape.controls((1, 2)) == {"early": (0, 1), "late": (2, 3)}
    assert landscape.best_interval(0.95) is None
    assert parse_intervals("0-1, 3", 4) == {(0, 1), (3, 3)}
