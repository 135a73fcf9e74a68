"""An export's model card (Hub metadata, CRC scores beside both rules' picks) and its mergekit config."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from export_fixtures import (
    FRACTION,
    PAPER_PICK,
    STRICT_PICK,
    folder_tensors,
    load_tiny,
    mergekit_command,
    mergekit_rebuild,
    strict_landscape,
)
from huggingface_hub import ModelCard

from slr_core.export.mergekit_config import layer_filters, merge_config
from slr_core.export.model_card import model_card, source_metadata
from slr_core.export.writer import export_hybrid
from slr_core.models.demo import DEMO_LABEL
from slr_core.models.loading import ModelPair, load_pair
from slr_core.models.settings import Settings
from slr_core.models.sources import Source
from slr_core.report.summary import summary_markdown
from slr_core.slr.landscape import Landscape, Point


def _front_matter(text: str) -> dict:
    # The Hub's own parser: what it reads is what the model page shows.
    assert text.startswith("---\n")
    return ModelCard(text).data.to_dict()


def _row(name: str, point: Point) -> str:
    numbers = (point.quality, point.strict_quality, point.stop, point.diversity)
    return f"| {name} | " + " | ".join(f"{value:.4f}" for value in numbers) + " |"


def _without_strict(landscape: Landscape) -> Landscape:
    """The same landscape as a sweep without the strict-CRC numbers would leave it."""
    plain = lambda point: dataclasses.replace(point, stop=None, strict_quality=None)  # noqa: E731
    intervals = {key: plain(point) for key, point in landscape.intervals.items()}
    return dataclasses.replace(
        landscape, post=plain(landscape.post), pre=plain(landscape.pre), intervals=intervals
    )


# ---------------------------------------------------------------- what the card says


def test_card_states_pair_interval_scores_and_command(tiny_pair, tmp_path):
    landscape = strict_landscape()
    command = "python -m slr_core export X"
    folder = export_hybrid(tiny_pair, 1, 2, tmp_path / "out", landscape, command=command, q_fraction=FRACTION)
    card = (folder / "README.md").read_text()
    assert "Made by" not in card  # a CLI command is its own reproduction
    front = _front_matter(card)
    assert "selective-layer-restoration" in front["tags"] and front["library_name"] == "transformers"
    assert front["pipeline_tag"] == "text-generation" and tiny_pair.post.config.model_type in front["tags"]
    assert tiny_pair.label in card and "# SLR hybrid [1, 2]" in card
    assert "| model | Q_CRC (first token) | strict Q_CRC | stop rate | D_CRC (diversity) |" in card
    assert _row("post-trained", landscape.post) in card and _row("pre-trained", landscape.pre) in card
    assert _row("**hybrid [1, 2] (this export)**", landscape.intervals[(1, 2)]) in card
    assert f"```bash\n{command}\n```" in card


def test_card_shows_both_rules_picks_side_by_side(tiny_pair):
    landscape = strict_landscape()
    card = str(model_card(tiny_pair, *STRICT_PICK, landscape, "cmd", fraction=FRACTION))
    (a, b), (c, d) = STRICT_PICK, PAPER_PICK
    assert "### Selection at q-fraction 0.8" in card
    assert summary_markdown(landscape, FRACTION) in card  # the one selection formatter, not a copy
    for rule, (i, j) in (("strict", STRICT_PICK), ("paper", PAPER_PICK)):
        point = landscape.intervals[(i, j)]
        numbers = " | ".join(
            f"{v:.4f}" for v in (point.quality, point.strict_quality, point.stop, point.diversity)
        )
        assert (
            f"| **SLR** | {rule} | {FRACTION * landscape.post.rule_quality(rule):.4f} | [{i}, {j}] | {numbers} |"
            in card
        )
    assert f"- Strict rule: [{a}, {b}] is this rule's selection, this export." in card
    assert f"- Paper rule: the selection is [{c}, {d}]; this export is a different interval." in card
    other = str(model_card(tiny_pair, *PAPER_PICK, landscape, "cmd", fraction=FRACTION))
    assert f"- Strict rule: the selection is [{a}, {b}]; this export is a different interval." in other
    assert f"- Paper rule: [{c}, {d}] is this rule's selection, this export." in other


def test_card_says_when_strict_numbers_were_not_computed(tiny_pair):
    landscape = _without_strict(strict_landscape())
    card = str(model_card(tiny_pair, 1, 2, landscape, "cmd", fraction=FRACTION))
    post = landscape.post
    assert (
        f"| post-trained | {post.quality:.4f} | not computed | not computed | {post.diversity:.4f} |" in card
    )
    assert "- Strict rule: not computed" in card and "| strict |" not in card
    assert "- Paper rule: [1, 2] is this rule's selection, this export." in card
    assert summary_markdown(landscape, FRACTION) in card


def test_card_says_when_no_interval_meets_a_rule(tiny_pair):
    card = str(model_card(tiny_pair, 1, 2, strict_landscape(), "cmd", fraction=1.0))
    assert card.count("rule: no interval in the landscape meets it.") == 2
    assert card.count("SLR: no interval reaches q_min") == 2


def test_card_without_landscape_says_so_and_gives_a_default_command(tiny_pair, tmp_path):
    folder = export_hybrid(tiny_pair, 0, 1, tmp_path / "out")
    card = (folder / "README.md").read_text()
    assert "No CRC scores were given" in card
    assert f"--interval 0 1 --out {folder}" in card
    assert not (folder / "landscape.csv").exists()


def test_an_app_export_gets_a_runnable_cli_command(tiny_pair, tmp_path):
    folder = export_hybrid(
        tiny_pair, 1, 2, tmp_path / "out", command="SLR Explorer app: export hybrid [1, 2]"
    )
    card = (folder / "README.md").read_text()
    assert "Made by: SLR Explorer app: export hybrid [1, 2]" in card
    assert f"python -m slr_core export --pre {tiny_pair.pre_source.spec}" in card


# ---------------------------------------------------------------- Hub metadata


def test_demo_card_names_the_demo_pair_and_carries_gemma_metadata(tiny_pair):
    # The tiny models stand in for the weights; the card depends only on the sources and the label.
    demo = ModelPair(
        tiny_pair.pre,
        tiny_pair.post,
        tiny_pair.tokenizer,
        Source("demo:pre", "demo", "pre"),
        Source("demo:post", "demo", "post"),
        tiny_pair.settings,
        label=DEMO_LABEL,
    )
    metadata = [source_metadata(demo.pre_source), source_metadata(demo.post_source)]
    card = str(model_card(demo, 1, 2, None, "cmd", metadata))
    front = _front_matter(card)
    assert front["license"] == "gemma" and front["base_model"] == "google/gemma-3-270m"
    assert "base_model_relation" not in front  # one base model, named twice
    assert DEMO_LABEL in card and "not Google's instruction-tuned" in card
    assert "gemma-3-270m-it" not in card


def test_two_hub_bases_make_a_merge_and_differing_licenses_become_other(tiny_pair):
    metadata = [
        {"base_model": "org/pre", "license": "apache-2.0"},
        {"base_model": "org/post", "license": "other", "license_name": "post-license"},
    ]
    front = _front_matter(str(model_card(tiny_pair, 1, 2, None, "cmd", metadata)))
    assert front["base_model"] == ["org/pre", "org/post"] and front["base_model_relation"] == "merge"
    assert front["license"] == "other" and front["license_name"] == "post-license"
    alone = _front_matter(str(model_card(tiny_pair, 1, 2, None, "cmd")))
    assert "license" not in alone and "base_model" not in alone


def test_license_is_carried_over_from_a_source_card(tiny_paths, tmp_path):
    pre, post = tiny_paths("mistral")
    copy = tmp_path / "post-with-card"
    shutil.copytree(post, copy)
    card = "---\nlicense: other\nlicense_name: tiny-license\nbase_model: someone/ancestor\n---\n# a model\n"
    (copy / "README.md").write_text(card)
    pair = load_pair(str(pre), str(copy), Settings(device="cpu"))
    folder = export_hybrid(pair, 1, 1, tmp_path / "out")
    front = _front_matter((folder / "README.md").read_text())
    assert front["license"] == "other" and front["license_name"] == "tiny-license"
    assert "base_model" not in front  # the source's own ancestry is not this model's base


def test_an_unreadable_source_card_only_costs_the_license(tiny_paths, tmp_path):
    pre, post = tiny_paths("llama")
    copy = tmp_path / "post-with-bad-card"
    shutil.copytree(post, copy)
    (copy / "README.md").write_text("---\nlicense: [unclosed\n---\n# a model\n")
    assert source_metadata(Source(str(copy), "folder", str(copy))) == {}


# ---------------------------------------------------------------- mergekit config


def _mergekit_weight(setting: list[dict], name: str) -> float:
    # mergekit's rule (config.evaluate_setting): the first entry whose filter is absent or a substring.
    for entry in setting:
        if entry.get("filter") in (None, "*") or entry["filter"] in name:
            return float(entry["value"])
    raise AssertionError(f"no weight for {name}")


def _apply_merge_config(config: dict, sources: dict, name: str) -> torch.Tensor:
    total, norm = None, 0.0
    for model in config["models"]:
        weight = _mergekit_weight(model["parameters"]["weight"], name)
        tensor = sources[model["model"]][name].double()
        total = weight * tensor if total is None else total + weight * tensor
        norm += weight
    return total / norm  # mergekit's linear merge normalises by default


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt_neox", "phi3"])
def test_mergekit_config_selects_the_hybrids_tensors(tiny_paths, tmp_path, family):
    pair = load_tiny(tiny_paths, family)
    n = pair.num_layers
    for start, end in [(0, 0), (n - 1, n - 1), (0, n - 1), (1, 2)]:
        folder = export_hybrid(pair, start, end, tmp_path / f"{start}-{end}")
        config = yaml.safe_load((folder / "mergekit.yaml").read_text())
        assert config["merge_method"] == "linear" and config["base_model"] == pair.post_source.location
        sources = {model["model"]: folder_tensors(Path(model["model"])) for model in config["models"]}
        exported = folder_tensors(folder)
        for name, tensor in exported.items():
            merged = _apply_merge_config(config, sources, name).to(tensor.dtype)
            assert torch.equal(merged, tensor), (family, start, end, name)


def test_layer_filters_do_not_match_longer_layer_numbers():
    config = merge_config("post", "pre", "model.layers", 1, 1, "float32")
    names = [f"model.layers.{k}.mlp.up_proj.weight" for k in range(12)] + ["lm_head.weight"]
    pre_weights = [_mergekit_weight(config["models"][1]["parameters"]["weight"], name) for name in names]
    assert pre_weights == [0, 1] + [0] * 10 + [0]
    assert layer_filters("gpt_neox.layers", 2, 3) == ["gpt_neox.layers.2.", "gpt_neox.layers.3."]


@pytest.mark.skipif(mergekit_command() is None, reason="mergekit is not installed (or set MERGEKIT_YAML)")
@pytest.mark.parametrize(("family", "interval"), [("llama", (0, 1)), ("gemma3", (2, 3))])
def test_mergekit_rebuilds_the_exported_weights(tiny_paths, tmp_path, family, interval):
    pair = load_tiny(tiny_paths, family)
    folder = export_hybrid(pair, *interval, tmp_path / "export")
    exported, merged = folder_tensors(folder), mergekit_rebuild(folder, tmp_path / "rebuilt")
    assert exported.keys() == merged.keys()
    assert all(torch.equal(exported[name], merged[name]) for name in exported)
