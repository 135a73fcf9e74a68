"""Partial, free-form and fractional hybrids export as model folders that mergekit rebuilds."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from export_fixtures import folder_tensors, load_tiny, mergekit_command, mergekit_rebuild
from transformers import AutoModelForCausalLM

from slr_core.export.writer import export_name, export_restoration
from slr_core.slr.hybrid import Restoration, build_restored, interval_restoration

# (layers, mode, fraction): an interval per mode, a free-form set, fractions.
CASES = [
    ((1, 2), "attention", 1.0),
    ((0, 3), "mlp", 1.0),
    ((0, 2, 3), "layer", 0.4),
    ((1, 3), "attention", 0.25),
]


def _pre_weight(setting: list[dict], name: str) -> float:
    # mergekit's rule (config.evaluate_setting): the first entry whose filter is absent or a substring.
    for entry in setting:
        if entry.get("filter") in (None, "*") or entry["filter"] in name:
            return float(entry["value"])
    raise AssertionError(f"no weight for {name}")


def _apply(config: dict, sources: dict, name: str) -> torch.Tensor:
    total, norm = 0, 0.0
    for model in config["models"]:
        weight = _pre_weight(model["parameters"]["weight"], name)
        total = total + weight * sources[model["model"]][name].double()
        norm += weight
    return total / norm  # mergekit's linear merge normalises by default


def _export(pair, restoration, folder):
    return export_restoration(pair, restoration, folder)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt_neox", "mixtral", "gemma3_mm"])
def test_exports_reload_as_the_hybrid_and_the_config_rebuilds_them(tiny_paths, tmp_path, family):
    pair = load_tiny(tiny_paths, family)
    ids = torch.randint(3, len(pair.tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))
    for layers, mode, fraction in CASES:
        restoration = Restoration(layers, mode, fraction)
        folder = _export(pair, restoration, tmp_path / export_name(pair, (0, 0), restoration))
        if family != "gemma3_mm":  # a multimodal class: reloading is covered by test_architectures
            reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
            expected = build_restored(pair, restoration)(input_ids=ids).logits
            torch.testing.assert_close(reloaded(input_ids=ids).logits, expected, rtol=0, atol=1e-6)
        config = yaml.safe_load((folder / "mergekit.yaml").read_text())
        sources = {model["model"]: folder_tensors(Path(model["model"])) for model in config["models"]}
        exported, post = folder_tensors(folder), sources[config["base_model"]]
        changed = 0
        for name, tensor in exported.items():
            merged = _apply(config, sources, name).to(tensor.dtype)
            if fraction == 1:
                assert torch.equal(merged, tensor), (family, restoration, name)
            else:
                torch.testing.assert_close(merged, tensor, rtol=0, atol=1e-6)
            changed += not torch.equal(tensor, post[name])
            if "norm" in name and mode != "layer":
                assert torch.equal(tensor, post[name]), name  # every norm stays post-trained
        assert changed > 0, restoration  # the export is a real hybrid
        provenance = json.loads((folder / "slr_export.json").read_text())
        assert provenance["layers"] == list(layers) and provenance["restore"] == mode
        assert provenance["lambda"] == fraction


def test_card_and_names_say_what_was_restored(tiny_pair, tmp_path):
    restoration = Restoration((0, 2, 3), "mlp", 0.5)
    name = export_name(tiny_pair, (0, 0), restoration)
    assert "-0_2-3-mlp-l0.5-" in name and name != export_name(tiny_pair, (0, 3))
    assert export_name(tiny_pair, (1, 2), interval_restoration(1, 2)) == export_name(tiny_pair, (1, 2))
    folder = _export(tiny_pair, restoration, tmp_path / "out")
    card = (folder / "README.md").read_text()
    assert "# SLR hybrid layers 0,2-3 MLP only, λ=0.5" in card and "Every norm" in card
    assert "--layers 0,2-3 --restore mlp --fraction 0.5" in card


def test_cli_exports_a_set_of_layers_with_a_mode_and_fraction(tiny_paths, tmp_path, capsys):
    from slr_core.cli import main

    pre, post = tiny_paths("llama")
    out = tmp_path / "cli-out"
    argv = ["export", "--pre", str(pre), "--post", str(post), "--device", "cpu", "--dtype", "float32"]
    argv += ["--layers", "0,2-3", "--restore", "attention", "--fraction", "0.5", "--out", str(out)]
    assert main(argv) == 0
    assert json.loads((out / "slr_export.json").read_text())["restore"] == "attention"
    with pytest.raises(SystemExit) as refused:  # argparse refuses a lambda outside (0, 1]
        main([*argv[:-3], "1.5", "--out", str(tmp_path / "bad")])
    assert refused.value.code == 2 and "--fraction" in capsys.readouterr().err


@pytest.mark.skipif(mergekit_command() is None, reason="mergekit is not installed (or set MERGEKIT_YAML)")
@pytest.mark.parametrize("family", ["llama", "gemma3"])
@pytest.mark.parametrize(("layers", "mode", "fraction"), CASES)
def test_mergekit_rebuilds_partial_and_fractional_exports(
    tiny_paths, tmp_path, family, layers, mode, fraction
):
    pair = load_tiny(tiny_paths, family)
    folder = _export(pair, Restoration(layers, mode, fraction), tmp_path / "export")
    exported, merged = folder_tensors(folder), mergekit_rebuild(folder, tmp_path / "rebuilt")
    assert exported.keys() == merged.keys()
    for name, tensor in exported.items():
        if fraction == 1:
            assert torch.equal(tensor, merged[name]), name
        else:  # a blend rounds once in float32 either way; the two may differ in the last bit
            torch.testing.assert_close(merged[name], tensor, rtol=0, atol=1e-6)
