"""Exported hybrids: a standard model folder that reloads to the same logits, written atomically."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FAMILIES
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from slr_core import export
from slr_core.crc import default_prompts, encode_prompts
from slr_core.demo import DEMO_LABEL
from slr_core.errors import ExportError, IntervalError
from slr_core.export import export_hybrid, landscape_csv, layer_filters, merge_config, push_to_hub
from slr_core.hybrid import build_hybrid
from slr_core.models import ModelPair, Settings, Source, load_pair
from slr_core.survey import complete, survey

ROOT = Path(__file__).resolve().parent.parent


def _pair(tiny_paths, family: str) -> ModelPair:
    pre, post = tiny_paths(family)
    return load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def landscape(tiny_pair):
    """The tiny Llama pair's full CRC landscape over a few prompts."""
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()[:6])
    return complete(survey(tiny_pair, encoded, use_cache=False))


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids, use_cache=False).logits


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, "pt") as stream:
            tensors.update({name: stream.get_tensor(name) for name in stream.keys()})
    return tensors


def _ids(pair: ModelPair) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(3, len(pair.tokenizer), (2, 14), generator=generator)


# ---------------------------------------------------------------- the folder reloads as the hybrid


@pytest.mark.parametrize("family", FAMILIES)
def test_reloaded_export_gives_the_hybrids_logits(tiny_paths, tmp_path, family):
    pair = _pair(tiny_paths, family)
    for start, end in [(1, 2), (0, 0), (pair.num_layers - 1, pair.num_layers - 1)]:
        folder = export_hybrid(pair, start, end, tmp_path / f"{family}-{start}-{end}")
        reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        ids = _ids(pair)
        expected = _logits(build_hybrid(pair, start, end), ids)
        torch.testing.assert_close(_logits(reloaded, ids), expected, rtol=0, atol=1e-6)
        assert not torch.allclose(expected, _logits(pair.post, ids), atol=1e-4)  # a real hybrid


def test_tied_embeddings_stay_tied(tiny_paths, tmp_path):
    pair = _pair(tiny_paths, "gemma3")
    assert pair.post.config.tie_word_embeddings
    folder = export_hybrid(pair, 0, 3, tmp_path / "tied")
    assert "lm_head.weight" not in _tensors(folder)
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()


def test_large_models_are_sharded_and_still_reload(tiny_paths, tmp_path):
    pair = _pair(tiny_paths, "qwen2")
    folder = export_hybrid(pair, 1, 3, tmp_path / "sharded", max_shard_size="20KB")
    shards = sorted(folder.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and (folder / "model.safetensors.index.json").is_file()
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    ids = _ids(pair)
    torch.testing.assert_close(
        _logits(reloaded, ids), _logits(build_hybrid(pair, 1, 3), ids), rtol=0, atol=1e-6
    )


def test_tokenizer_chat_template_and_generation_config_travel(tiny_pair, tmp_path):
    folder = export_hybrid(tiny_pair, 1, 2, tmp_path / "out")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template == tiny_pair.tokenizer.chat_template
    messages = [{"role": "user", "content": "Pick a digit"}]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("<start_of_turn>model\n")
    assert (folder / "generation_config.json").is_file()


def test_export_leaves_the_pair_untouched(tiny_paths, tmp_path):
    pair = _pair(tiny_paths, "llama")
    before = {k: v.clone() for k, v in pair.post.state_dict().items()}
    config = pair.post.config.to_dict()
    export_hybrid(pair, 0, 2, tmp_path / "out")
    assert pair.post.config.to_dict() == config
    assert all(torch.equal(before[k], v) for k, v in pair.post.state_dict().items())


# ---------------------------------------------------------------- card, landscape, provenance


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_states_pair_interval_scores_and_command(tiny_pair, landscape, tmp_path):
    folder = export_hybrid(
        tiny_pair, 1, 2, tmp_path / "out", landscape, command="python -m slr_core export X"
    )
    card = (folder / "README.md").read_text()
    assert "Made by" not in card  # a CLI command is its own reproduction
    front = _front_matter(card)
    assert "selective-layer-restoration" in front["tags"] and front["library_name"] == "transformers"
    assert tiny_pair.label in card and "[1, 2]" in card
    for point in (landscape.post, landscape.intervals[(1, 2)], landscape.pre):
        assert f"{point.quality:.4f} | {point.diversity:.4f}" in card
    assert "python -m slr_core export X" in card
    assert (folder / "landscape.csv").read_text() == landscape_csv(landscape)
    provenance = json.loads((folder / "slr_export.json").read_text())
    assert (
        provenance["interval"] == [1, 2]
        and provenance["crc"]["hybrid"]["quality"] == landscape.intervals[(1, 2)].quality
    )
    assert provenance["landscape_meta"]["cache_context"] == landscape.meta["cache_context"]


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


def test_card_says_whether_the_interval_is_the_selection(tiny_pair, landscape, tmp_path):
    best = landscape.best_interval(landscape.q_min(0.9))
    card = export.model_card(tiny_pair, *best, landscape, "cmd")
    assert f"[{best[0]}, {best[1]}] is the landscape's selection" in card
    other = next(k for k in landscape.intervals if k != best)
    assert "this export is a different interval" in export.model_card(tiny_pair, *other, landscape, "cmd")


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
    metadata = [export._source_metadata(demo.pre_source), export._source_metadata(demo.post_source)]
    card = export.model_card(demo, 1, 2, None, "cmd", metadata)
    front = _front_matter(card)
    assert front["license"] == "gemma" and front["base_model"] == "google/gemma-3-270m"
    assert DEMO_LABEL in card and "not Google's instruction-tuned" in card
    assert "gemma-3-270m-it" not in card


@pytest.mark.real
def test_the_real_demo_pair_exports_and_reloads(tmp_path, monkeypatch):
    from slr_core import cache, demo

    # The user's cache holds the dequantized snapshot (built once, about 80 s); reuse it.
    monkeypatch.setenv(cache.CACHE_ENV, str(ROOT / "cache"))
    pair = load_pair("demo:pre", "demo:post", Settings(device="cpu", dtype="float32"))
    folder = export_hybrid(pair, 4, 9, tmp_path / "demo-hybrid")
    ids = torch.tensor([pair.tokenizer("Pick a digit from 0 to 9.")["input_ids"]])
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    torch.testing.assert_close(
        _logits(reloaded, ids), _logits(build_hybrid(pair, 4, 9), ids), rtol=0, atol=1e-5
    )
    card = (folder / "README.md").read_text()
    assert _front_matter(card)["license"] == "gemma" and DEMO_LABEL in card
    config = yaml.safe_load((folder / "mergekit.yaml").read_text())
    assert config["models"][0]["model"] == f"{demo.demo_base_dir()}+{demo.ADAPTER_DIR}"


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
    pair = _pair(tiny_paths, family)
    n = pair.num_layers
    for start, end in [(0, 0), (n - 1, n - 1), (0, n - 1), (1, 2)]:
        folder = export_hybrid(pair, start, end, tmp_path / f"{start}-{end}")
        config = yaml.safe_load((folder / "mergekit.yaml").read_text())
        assert config["merge_method"] == "linear" and config["base_model"] == pair.post_source.location
        sources = {model["model"]: _tensors(Path(model["model"])) for model in config["models"]}
        exported = _tensors(folder)
        for name, tensor in exported.items():
            merged = _apply_merge_config(config, sources, name).to(tensor.dtype)
            assert torch.equal(merged, tensor), (family, start, end, name)


def test_layer_filters_do_not_match_longer_layer_numbers():
    config = merge_config("post", "pre", "model.layers", 1, 1, "float32")
    names = [f"model.layers.{k}.mlp.up_proj.weight" for k in range(12)] + ["lm_head.weight"]
    pre_weights = [_mergekit_weight(config["models"][1]["parameters"]["weight"], name) for name in names]
    assert pre_weights == [0, 1] + [0] * 10 + [0]
    assert layer_filters("gpt_neox.layers", 2, 3) == ["gpt_neox.layers.2.", "gpt_neox.layers.3."]


def _mergekit_command() -> list[str] | None:
    found = os.environ.get("MERGEKIT_YAML") or shutil.which("mergekit-yaml")
    return [found] if found else None


@pytest.mark.skipif(_mergekit_command() is None, reason="mergekit is not installed (or set MERGEKIT_YAML)")
@pytest.mark.parametrize(("family", "interval"), [("llama", (0, 1)), ("gemma3", (2, 3))])
def test_mergekit_rebuilds_the_exported_weights(tiny_paths, tmp_path, family, interval):
    pair = _pair(tiny_paths, family)
    folder = export_hybrid(pair, *interval, tmp_path / "export")
    rebuilt = tmp_path / "rebuilt"
    run = subprocess.run(
        [*_mergekit_command(), str(folder / "mergekit.yaml"), str(rebuilt)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    exported, merged = _tensors(folder), _tensors(rebuilt)
    assert exported.keys() == merged.keys()
    assert all(torch.equal(exported[name], merged[name]) for name in exported)


# ---------------------------------------------------------------- the target folder


def test_existing_non_empty_target_is_refused_and_left_alone(tiny_pair, tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists and is not empty"):
        export_hybrid(tiny_pair, 1, 2, target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_overwrite_replaces_a_previous_export_completely(tiny_pair, landscape, tmp_path):
    target = export_hybrid(tiny_pair, 1, 2, tmp_path / "out", landscape)
    (target / "stale.txt").write_text("from before")
    export_hybrid(tiny_pair, 0, 0, target, overwrite=True)
    assert not (target / "stale.txt").exists() and not (target / "landscape.csv").exists()
    assert json.loads((target / "slr_export.json").read_text())["interval"] == [0, 0]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old folder


def test_overwrite_never_replaces_a_folder_that_is_not_a_model(tiny_pair, tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "main.py").write_text("print()")
    with pytest.raises(ExportError, match="not a model folder"):
        export_hybrid(tiny_pair, 1, 2, tmp_path / "project", overwrite=True)
    with pytest.raises(ExportError, match="one of the pair's own source models"):
        export_hybrid(tiny_pair, 1, 2, tiny_pair.post_source.location, overwrite=True)


def test_bad_targets_get_specific_errors(tiny_pair, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_hybrid(tiny_pair, 1, 2, afile)
    with pytest.raises(ExportError, match="a file is in the way"):
        export_hybrid(tiny_pair, 1, 2, afile / "sub")
    with pytest.raises(ExportError, match="No output folder"):
        export_hybrid(tiny_pair, 1, 2, "  ")
    with pytest.raises(ExportError, match="filesystem root"):
        export_hybrid(tiny_pair, 1, 2, "/")
    with pytest.raises(IntervalError):
        export_hybrid(tiny_pair, 2, 9, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_empty_target_and_missing_parents_are_fine(tiny_pair, tmp_path):
    (tmp_path / "empty").mkdir()
    assert (export_hybrid(tiny_pair, 1, 2, tmp_path / "empty") / "config.json").is_file()
    assert (export_hybrid(tiny_pair, 1, 2, tmp_path / "a" / "b" / "c") / "config.json").is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_parent_is_an_export_error(tiny_pair, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ExportError, match="permission denied"):
        export_hybrid(tiny_pair, 1, 2, locked / "out")


# A child process that loads the pair, then may write at most LIMIT bytes into any one file: the
# kernel stops it (SIGXFSZ) or fails the write (EFBIG) in the middle of writing the weights.
CHILD = """
import resource, signal, sys
from slr_core.errors import SLRError
from slr_core.export import export_hybrid
from slr_core.models import Settings, load_pair
pre, post, target, mode, overwrite = sys.argv[1:6]
pair = load_pair(pre, post, Settings(device="cpu", dtype="float32"))
# Python ignores SIGXFSZ, so an oversized write fails with EFBIG; "kill" restores the kernel's default.
signal.signal(signal.SIGXFSZ, signal.SIG_DFL if mode == "kill" else signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, resource.RLIM_INFINITY))
try:
    export_hybrid(pair, 1, 2, target, overwrite=overwrite == "1")
except SLRError as error:
    print(f"error: {error}")
    sys.exit(2)
"""


def _run_child(tiny_paths, target: Path, mode: str, overwrite: bool) -> subprocess.CompletedProcess:
    pre, post = tiny_paths("llama")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-c", CHILD, str(pre), str(post), str(target), mode, "1" if overwrite else "0"]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def test_an_export_killed_half_way_leaves_no_model(tiny_paths, tmp_path):
    target = tmp_path / "area" / "out"
    run = _run_child(tiny_paths, target, "kill", overwrite=False)
    assert run.returncode == -signal.SIGXFSZ, run.stderr[-2000:]
    assert not target.exists()
    leftovers = [p.name for p in target.parent.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".out-") and leftovers[0].endswith(".partial")


def test_a_killed_overwrite_keeps_the_previous_export(tiny_paths, tiny_pair, tmp_path):
    target = export_hybrid(tiny_pair, 0, 0, tmp_path / "out")
    run = _run_child(tiny_paths, target, "kill", overwrite=True)
    assert run.returncode == -signal.SIGXFSZ, run.stderr[-2000:]
    assert json.loads((target / "slr_export.json").read_text())["interval"] == [0, 0]
    AutoModelForCausalLM.from_pretrained(target)  # still a complete model


def test_a_failed_write_is_an_export_error_and_cleans_up(tiny_paths, tmp_path):
    target = tmp_path / "area" / "out"
    run = _run_child(tiny_paths, target, "error", overwrite=False)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stdout.startswith("error: Could not write the export") and "Traceback" not in run.stderr
    assert list(target.parent.iterdir()) == []


def test_cli_export_writes_the_folder(tiny_paths, tmp_path, capsys):
    from slr_core.cli import main

    pre, post = tiny_paths("llama")
    out = tmp_path / "cli-out"
    argv = ["export", "--pre", str(pre), "--post", str(post), "--device", "cpu", "--interval", "1", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    assert (out / "landscape.csv").is_file() and "python -m slr_core" in (out / "README.md").read_text()
    assert main([*argv, "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_an_export_gets_ordinary_permissions_not_the_staging_ones(tiny_pair, tmp_path, landscape):
    old_mask = os.umask(0o022)
    try:
        folder = export_hybrid(tiny_pair, 1, 2, tmp_path / "shared", landscape)
    finally:
        os.umask(old_mask)
    assert folder.stat().st_mode & 0o777 == 0o755  # mkdtemp alone would leave 0700
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert set(modes.values()) == {0o644}, modes  # mkstemp alone would leave 0600


# ---------------------------------------------------------------- the Hub


@pytest.fixture
def exported(tiny_pair, tmp_path):
    return export_hybrid(tiny_pair, 1, 2, tmp_path / "out")


def test_push_checks_its_arguments_first(exported, tmp_path):
    with pytest.raises(ExportError, match="not an exported model folder"):
        push_to_hub(tmp_path / "nothing", "me/model", token="hf_x")
    with pytest.raises(ExportError, match="owner/name"):
        push_to_hub(exported, "not a repo", token="hf_x")


def test_push_offline_is_a_clear_error(exported, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ExportError, match="offline mode"):
        push_to_hub(exported, "me/model", token="hf_x")


def test_push_without_a_token_says_how_to_log_in(exported, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(ExportError, match="not logged in"):
        push_to_hub(exported, "me/model")


def test_push_to_an_unreachable_hub_is_a_clear_error(exported, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(ExportError, match="unreachable"):
        push_to_hub(exported, "me/model", token="hf_x")


class _Refuse(http.server.BaseHTTPRequestHandler):
    def _refuse(self):
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _refuse

    def log_message(self, *args):
        pass


def test_push_with_a_refused_token_is_a_clear_error(exported, monkeypatch):
    from huggingface_hub import constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    try:
        with pytest.raises(ExportError, match="refused the token"):
            push_to_hub(exported, "me/model", token="hf_invalid")
    finally:
        server.shutdown()
