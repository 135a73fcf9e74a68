"""Layers, final norm and head are found on the model itself, for every family; pairs must match.

Each family's tiny pair is saved with save_pretrained and loaded through the real loading code.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FAMILIES
from export_fixtures import folder_tensors
from tiny_pairs import make_pair
from transformers import AutoModelForCausalLM, GPT2Config, T5Config, T5ForConditionalGeneration

from slr_core import cli
from slr_core.downstream.sampling import SamplingSettings, sample
from slr_core.errors import IncompatibleModelsError, UnsupportedArchitectureError
from slr_core.export.writer import export_hybrid
from slr_core.models import presets
from slr_core.models.architectures import (
    checkpoint_layers_path,
    decoder_layers,
    describe,
    final_norm,
    head_logits,
    layers_path,
)
from slr_core.models.loading import ModelPair, check_compatible, load_pair
from slr_core.models.presets import Preset, get_preset
from slr_core.models.settings import Settings
from slr_core.models.sources import parse_source
from slr_core.slr.hybrid import build_hybrid

# Where each family keeps its text stack, and the head transform its forward applies.
EXPECTED = {
    "gpt_neox": ("gpt_neox.layers", "gpt_neox.final_layer_norm", {}),
    "gemma2": ("model.layers", "model.norm", {"softcap": 3.0}),
    # Multimodal Gemma 3: the text stack under language_model, never the vision tower's layers.
    "gemma3_mm": ("model.language_model.layers", "model.language_model.norm", {}),
    "granite": ("model.layers", "model.norm", {"divisor": 4.0}),
    "cohere": ("model.layers", "model.norm", {"multiplier": 0.25}),
}
NEW_FAMILIES = ["olmo2", "granite", "smollm3", "cohere", "mixtral", "gemma3_mm"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(tiny_paths, family: str) -> ModelPair:
    pre, post = tiny_paths(family)
    return load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))


def _ids(pair: ModelPair) -> torch.Tensor:
    return torch.tensor([pair.tokenizer("Generate a random letter from A to K, please.")["input_ids"] * 2])


# ---------------------------------------------------------------- discovery and the head


@pytest.mark.parametrize("family", FAMILIES)
def test_layers_norm_and_head_are_found_and_replay_the_models_logits(tiny_paths, family):
    pair = _pair(tiny_paths, family)
    model = pair.post
    layers, norm, head = EXPECTED.get(family, ("model.layers", "model.norm", {}))
    arch = describe(model)
    assert (arch.layers, arch.norm, arch.num_layers) == (layers, norm, 4)
    assert {k: v for k in ("multiplier", "divisor", "softcap") if (v := getattr(arch, k)) is not None} == head
    assert decoder_layers(model) is model.get_submodule(layers) and final_norm(model) is model.get_submodule(
        norm
    )
    # The replayed head on the last layer's output equals the model's own logits.
    captured = []
    handle = decoder_layers(model)[-1].register_forward_hook(
        lambda _m, _a, out: captured.append(out[0] if isinstance(out, tuple) else out)
    )
    ids = _ids(pair)
    with torch.inference_mode():
        expected = model(input_ids=ids, use_cache=False).logits.float()
        ours = head_logits(model, captured[0])
    handle.remove()
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


def test_multimodal_gemma3_restores_only_the_text_stack(tiny_paths):
    pair = _pair(tiny_paths, "gemma3_mm")
    assert type(pair.post).__name__ == "Gemma3ForConditionalGeneration"
    assert pair.num_layers == pair.post.config.get_text_config().num_hidden_layers == 4
    # The tiny pair differs inside the text decoder layers only: the vision tower is shared.
    pre, post = pair.pre.state_dict(), pair.post.state_dict()
    differ = {name for name in post if not torch.equal(pre[name], post[name])}
    assert differ and all(name.startswith("model.language_model.layers.") for name in differ)
    hybrid = build_hybrid(pair, 1, 2)
    assert hybrid.get_submodule("model.language_model.layers")[1] is decoder_layers(pair.pre)[1]
    assert hybrid.get_submodule("model.vision_tower") is pair.post.get_submodule("model.vision_tower")
    # Checkpoints (and mergekit) name these tensors language_model.model.layers.*: the hub's layout.
    assert checkpoint_layers_path(pair.post) == "language_model.model.layers"
    saved = folder_tensors(Path(pair.post_source.location))
    assert any(name.startswith("language_model.model.layers.0.") for name in saved)


@pytest.mark.parametrize("family", FAMILIES)
def test_hybrid_export_and_sampling_work_for_every_family(tiny_paths, tmp_path, family):
    pair = _pair(tiny_paths, family)
    ids = _ids(pair)
    hybrid = build_hybrid(pair, 1, 2)
    # The hybrid equals the post model with layers 1..2 overwritten by the pre model's weights.
    reference = AutoModelForCausalLM.from_pretrained(pair.post_source.location, dtype=torch.float32).eval()
    for k in (1, 2):
        decoder_layers(reference)[k].load_state_dict(decoder_layers(pair.pre)[k].state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(
            hybrid(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=0, atol=0
        )
    # The export reloads as the hybrid, and its mergekit config picks exactly its tensors.
    folder = export_hybrid(pair, 1, 2, tmp_path / "export")
    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.inference_mode():
        torch.testing.assert_close(
            reloaded(input_ids=ids).logits, hybrid(input_ids=ids).logits, rtol=0, atol=1e-6
        )
    config = yaml.safe_load((folder / "mergekit.yaml").read_text())
    prefix = checkpoint_layers_path(pair.post)
    pre_filters = [entry.get("filter") for entry in config["models"][1]["parameters"]["weight"]]
    assert pre_filters == [f"{prefix}.1.", f"{prefix}.2.", None]
    exported, post_tensors = folder_tensors(folder), folder_tensors(Path(pair.post_source.location))
    pre_tensors = folder_tensors(Path(pair.pre_source.location))
    restored = {name for name in exported if any(f in name for f in pre_filters[:2])}
    assert restored and all(torch.equal(exported[n], pre_tensors[n]) for n in restored)
    assert all(torch.equal(exported[n], post_tensors[n]) for n in exported.keys() - restored)
    # Sampling runs through generate with a KV cache, on the hybrid as on the post model.
    settings = SamplingSettings(num_samples=2, max_new_tokens=4, seed=0)
    for model in (hybrid, pair.post):
        replies = sample(model, pair.tokenizer, "Generate a random letter from A to K.", settings)
        assert len(replies) == 2 and all(isinstance(reply, str) for reply in replies)


def test_checkpoint_path_is_the_module_path_where_nothing_is_renamed(tiny_pair):
    assert checkpoint_layers_path(tiny_pair.post) == layers_path(tiny_pair.post) == "model.layers"


def test_unsupported_models_are_refused_with_a_reason():
    # Encoder-decoders never load as causal LMs; build one directly.
    encoder_decoder = T5ForConditionalGeneration(
        T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, vocab_size=64)
    )
    with pytest.raises(UnsupportedArchitectureError, match="unsupported, because it is an encoder-decoder"):
        describe(encoder_decoder)
    with pytest.raises(
        UnsupportedArchitectureError, match="unsupported, because it has no transformers config"
    ):
        describe(torch.nn.Linear(2, 2))
    # Discovery needs no table: GPT-2's transformer.h and ln_f are found like any other stack.
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64))
    assert (describe(gpt2).layers, describe(gpt2).norm) == ("transformer.h", "transformer.ln_f")


def test_layers_that_share_state_are_refused_when_found():
    from transformers import Gemma3nTextConfig, LlamaConfig

    gemma3n = AutoModelForCausalLM.from_config(
        Gemma3nTextConfig(
            vocab_size=64,
            vocab_size_per_layer_input=64,
            hidden_size=32,
            hidden_size_per_layer_input=8,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            num_kv_shared_layers=2,
            laurel_rank=4,
            altup_num_inputs=2,
            layer_types=["sliding_attention", "full_attention"] * 2,
            activation_sparsity_pattern=[0.0] * 4,
        )
    )
    with pytest.raises(
        UnsupportedArchitectureError, match="Gemma3nForCausalLM is unsupported, because .*AltUp"
    ):
        decoder_layers(gemma3n)
    # Any config that shares keys and values across layers is refused the same way.
    llama = AutoModelForCausalLM.from_config(
        LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, vocab_size=64
        )
    )
    llama.config.kv_sharing_modes = [None, "store", "reuse"]
    with pytest.raises(UnsupportedArchitectureError, match=r"layers \[2\] reuse keys and values"):
        describe(llama)


def test_a_wrong_layer_count_is_refused_before_any_work(tiny_pair):
    model = tiny_pair.post
    config = model.config
    try:
        config.num_hidden_layers = 5
        with pytest.raises(UnsupportedArchitectureError, match="no single ModuleList of 5 decoder layers"):
            describe(model)
    finally:
        config.num_hidden_layers = 4


# ---------------------------------------------------------------- the CLI on the new families


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_cli_sweep_runs_on_the_new_families(tiny_paths, tmp_path, family, capsys):
    pre, post = tiny_paths(family)
    out = tmp_path / "l.csv"
    code = cli.main(["sweep", "--pre", str(pre), "--post", str(post), "--out", str(out), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    intervals = {(int(r["start"]), int(r["end"])) for r in rows if r["kind"] == "interval"}
    assert intervals == {(i, j) for j in range(4) for i in range(j + 1)}
    assert all(0.0 <= float(r["quality"]) <= 1.0 for r in rows)


# ---------------------------------------------------------------- compatibility


@pytest.fixture(scope="module")
def other_vocab(tmp_path_factory):
    """A tiny Llama pair whose tokenizer (and so embedding matrix) is smaller than the usual one."""
    return make_pair(tmp_path_factory.mktemp("small-vocab"), "llama", tokenizer_vocab=200)


def test_mismatched_vocabularies_are_refused(tiny_paths, other_vocab):
    pre, post = tiny_paths("llama")
    small_pre, _ = other_vocab
    with pytest.raises(
        IncompatibleModelsError, match=r"vocabulary sizes .*pre-trained has 200, post-trained has 246"
    ):
        load_pair(str(small_pre), str(post), Settings(device="cpu"))


def test_mismatched_vocabularies_exit_2_with_one_line(tiny_paths, other_vocab, tmp_path, capsys):
    _, post = tiny_paths("llama")
    code = cli.main(
        ["sweep", "--pre", str(other_vocab[0]), "--post", str(post), "--out", str(tmp_path / "l.csv")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]  # after the loading progress bars
    assert last.startswith("error: Different vocabulary sizes") and "200" in last and "246" in last


def test_same_size_but_different_tokens_are_refused(tiny_paths, tmp_path):
    pre, post = tiny_paths("llama")
    swapped = tmp_path / "swapped-pre"
    shutil.copytree(pre, swapped)
    tokenizer_file = swapped / "tokenizer.json"
    spec = json.loads(tokenizer_file.read_text())
    vocab = spec["model"]["vocab"]
    vocab["A"], vocab["B"] = vocab["B"], vocab["A"]
    tokenizer_file.write_text(json.dumps(spec))
    with pytest.raises(
        IncompatibleModelsError, match=r"token 'A' is id \d+ in the pre-trained tokenizer and id \d+"
    ):
        load_pair(str(swapped), str(post), Settings(device="cpu"))


def test_different_hidden_sizes_are_refused(tiny_paths):
    pre, _ = tiny_paths("llama")
    narrow = AutoModelForCausalLM.from_pretrained(pre)
    wide = AutoModelForCausalLM.from_config(
        type(narrow.config)(**{**narrow.config.to_dict(), "hidden_size": 48, "num_attention_heads": 4})
    )
    with pytest.raises(
        IncompatibleModelsError, match="hidden sizes: pre-trained has 48, post-trained has 32"
    ):
        check_compatible(wide, narrow)


# ---------------------------------------------------------------- presets


def test_presets_name_real_hub_pairs():
    names = {preset.name for preset in presets.PRESETS.values()}
    assert len(names) == len(presets.PRESETS)
    for preset in presets.PRESETS.values():
        assert preset.pre != preset.post
        if not preset.offline:
            assert parse_source(preset.pre).kind == parse_source(preset.post).kind == "hub"
    pairs = {(p.pre, p.post) for p in presets.PRESETS.values()}
    for repo in ("allenai/OLMo-2-0425-1B", "allenai/OLMo-2-1124-7B"):
        stages = [repo, f"{repo}-SFT", f"{repo}-DPO", f"{repo}-Instruct"]
        assert {
            (stages[0], stages[1]),
            (stages[1], stages[2]),
            (stages[2], stages[3]),
            (stages[0], stages[3]),
        } <= pairs
    for pair in [
        ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct"),
        ("Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct"),
        ("google/gemma-2-9b", "google/gemma-2-9b-it"),
        ("google/gemma-3-1b-pt", "google/gemma-3-1b-it"),
        ("google/gemma-3-4b-pt", "google/gemma-3-4b-it"),
        ("HuggingFaceTB/SmolLM3-3B-Base", "HuggingFaceTB/SmolLM3-3B"),
    ]:
        assert pair in pairs, pair


def test_a_preset_loads_through_the_cli(tiny_paths, tmp_path, monkeypatch, capsys):
    pre, post = tiny_paths("olmo2")
    monkeypatch.setitem(presets.PRESETS, "tiny-olmo2", Preset("tiny-olmo2", str(pre), str(post)))
    assert get_preset("tiny-olmo2").post == str(post)
    out = tmp_path / "l.csv"
    code = cli.main(
        ["sweep", "--preset", "tiny-olmo2", "--intervals", "1-2", "--out", str(out), "--device", "cpu"]
    )
    assert code == 0, capsys.readouterr().err
    assert any(r["kind"] == "interval" for r in csv.DictReader(out.open()))
