"""Exported hybrids: a standard model folder that reloads to the same logits, written atomically."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FAMILIES
from export_fixtures import FRACTION, PAPER_PICK, STRICT_PICK, folder_tensors, load_tiny, strict_landscape
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM, AutoTokenizer

from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.cached_sweep import complete, survey
from slr_core.errors import ExportError, IntervalError
from slr_core.export.writer import (
    export_bytes,
    export_hybrid,
    export_name,
    landscape_csv,
    prune_exports,
    publish_archive,
    write_csv,
    zip_folder,
)
from slr_core.models.demo import DEMO_LABEL
from slr_core.models.hosting import HostedPolicy
from slr_core.models.loading import ModelPair, load_pair
from slr_core.models.settings import Settings
from slr_core.models.sources import Source
from slr_core.slr.hybrid import Restoration, build_hybrid, interval_restoration
from slr_core.slr.landscape import CSV_COLUMNS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def landscape(tiny_pair):
    """The tiny Llama pair's full CRC landscape over a few prompts."""
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()[:6])
    return complete(survey(tiny_pair, encoded, use_cache=False))


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids, use_cache=False).logits


def _ids(pair: ModelPair) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(3, len(pair.tokenizer), (2, 14), generator=generator)


# ---------------------------------------------------------------- the folder reloads as the hybrid


@pytest.mark.parametrize("family", FAMILIES)
def test_reloaded_export_gives_the_hybrids_logits(tiny_paths, tmp_path, family):
    pair = load_tiny(tiny_paths, family)
    for start, end in [(1, 2), (0, 0), (pair.num_layers - 1, pair.num_layers - 1)]:
        folder = export_hybrid(pair, start, end, tmp_path / f"{family}-{start}-{end}")
        reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        ids = _ids(pair)
        expected = _logits(build_hybrid(pair, start, end), ids)
        torch.testing.assert_close(_logits(reloaded, ids), expected, rtol=0, atol=1e-6)
        assert not torch.allclose(expected, _logits(pair.post, ids), atol=1e-4)  # a real hybrid


def test_tied_embeddings_stay_tied(tiny_paths, tmp_path):
    pair = load_tiny(tiny_paths, "gemma3")
    assert pair.post.config.tie_word_embeddings
    folder = export_hybrid(pair, 0, 3, tmp_path / "tied")
    assert "lm_head.weight" not in folder_tensors(folder)
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()


def test_large_models_are_sharded_and_still_reload(tiny_paths, tmp_path):
    pair = load_tiny(tiny_paths, "qwen2")
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
    pair = load_tiny(tiny_paths, "llama")
    before = {k: v.clone() for k, v in pair.post.state_dict().items()}
    config = pair.post.config.to_dict()
    export_hybrid(pair, 0, 2, tmp_path / "out")
    assert pair.post.config.to_dict() == config
    assert all(torch.equal(before[k], v) for k, v in pair.post.state_dict().items())


# ---------------------------------------------------------------- landscape and provenance


def test_export_carries_the_landscape_and_its_provenance(tiny_pair, landscape, tmp_path):
    folder = export_hybrid(
        tiny_pair, 1, 2, tmp_path / "out", landscape, command="python -m slr_core export X"
    )
    assert (folder / "landscape.csv").read_text() == landscape_csv(landscape)
    provenance = json.loads((folder / "slr_export.json").read_text())
    assert provenance["interval"] == [1, 2] and provenance["num_layers"] == tiny_pair.num_layers
    assert provenance["pre_fingerprint"] == tiny_pair.pre_fingerprint
    assert provenance["post_fingerprint"] == tiny_pair.post_fingerprint
    assert provenance["crc"]["hybrid"]["quality"] == landscape.intervals[(1, 2)].quality
    assert provenance["command"] == "python -m slr_core export X"
    assert provenance["landscape_meta"]["cache_context"] == landscape.meta["cache_context"]


def test_provenance_has_all_four_crc_numbers_and_both_picks(tiny_pair, tmp_path):
    landscape = strict_landscape()
    folder = export_hybrid(tiny_pair, 1, 2, tmp_path / "out", landscape, q_fraction=FRACTION)
    provenance = json.loads((folder / "slr_export.json").read_text())
    expected = {"post": landscape.post, "hybrid": landscape.intervals[(1, 2)], "pre": landscape.pre}
    assert provenance["crc"] == {name: dataclasses.asdict(point) for name, point in expected.items()}
    # answer_diversity is None where not computed (a landscape swept before it existed)
    numbers = {"quality", "diversity", "stop", "strict_quality", "answer_diversity"}
    assert set(provenance["crc"]["hybrid"]) == numbers
    selection = provenance["selection"]
    assert selection["q_fraction"] == FRACTION
    assert selection["strict"]["interval"] == list(STRICT_PICK)
    assert selection["paper"]["interval"] == list(PAPER_PICK)
    assert selection["strict"]["q_min"] == pytest.approx(FRACTION * landscape.post.strict_quality)
    assert selection["paper"]["q_min"] == pytest.approx(FRACTION * landscape.post.quality)


def test_provenance_without_a_landscape_has_no_scores(tiny_pair, tmp_path):
    folder = export_hybrid(tiny_pair, 0, 1, tmp_path / "out")
    provenance = json.loads((folder / "slr_export.json").read_text())
    assert provenance["crc"] == {} and provenance["selection"] is None
    assert provenance["landscape_meta"] is None


def test_landscape_csv_has_every_crc_column_and_a_meta_sidecar(tmp_path):
    landscape = strict_landscape()
    landscape.meta["command"] = "python -m slr_core sweep"
    path = write_csv(landscape, tmp_path / "sub" / "tiny.csv")
    with path.open() as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == CSV_COLUMNS
    interval = next(row for row in rows if (row["start"], row["end"]) == ("1", "2"))
    point = landscape.intervals[(1, 2)]
    assert [float(interval[name]) for name in ("quality", "diversity", "stop", "strict_quality")] == [
        point.quality,
        point.diversity,
        point.stop,
        point.strict_quality,
    ]
    assert json.loads(path.with_suffix(".meta.json").read_text()) == landscape.meta


@pytest.mark.real
def test_the_real_demo_pair_exports_and_reloads(tmp_path, monkeypatch):
    from slr_core import cache, cli
    from slr_core.models import demo

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
    assert ModelCard(card).data.license == "gemma" and DEMO_LABEL in card
    # mergekit.yaml names paths inside the export: the adapter ships in it, the base is one command away.
    config = yaml.safe_load((folder / "mergekit.yaml").read_text())
    assert [m["model"] for m in config["models"]] == ["demo-base+demo-adapter", "demo-base"]
    for name in demo.ADAPTER_FILES:
        assert (folder / "demo-adapter" / name).read_bytes() == (demo.ADAPTER_DIR / name).read_bytes()
    assert "python -m slr_core demo-base demo-base" in (folder / "mergekit.yaml").read_text()
    assert cli.main(["demo-base", str(folder / "demo-base")]) == 0
    base = AutoModelForCausalLM.from_pretrained(folder / "demo-base")
    for name, tensor in pair.pre.state_dict().items():
        assert torch.equal(base.state_dict()[name], tensor), name
    assert cli.main(["demo-base", str(folder / "demo-base")]) == 2  # not over a folder that has files


# ---------------------------------------------------------------- the target folder


def test_existing_non_empty_target_is_refused_and_left_alone(tiny_pair, tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists and is not empty"):
        export_hybrid(tiny_pair, 1, 2, target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_overwrite_replaces_a_previous_export_completely(tiny_pair, tmp_path):
    target = export_hybrid(tiny_pair, 1, 2, tmp_path / "out", strict_landscape())
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
from slr_core.export.writer import export_hybrid
from slr_core.models.loading import load_pair
from slr_core.models.settings import Settings
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


def test_an_export_gets_ordinary_permissions_not_the_staging_ones(tiny_pair, tmp_path):
    old_mask = os.umask(0o022)
    try:
        folder = export_hybrid(tiny_pair, 1, 2, tmp_path / "shared", strict_landscape())
    finally:
        os.umask(old_mask)
    assert folder.stat().st_mode & 0o777 == 0o755  # mkdtemp alone would leave 0700
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert set(modes.values()) == {0o644}, modes  # mkstemp alone would leave 0600


# ---------------------------------------------------------------- naming and zipping


def _with_sources(
    pair: ModelPair, pre_fingerprint: str, post_fingerprint: str, post_spec: str = ""
) -> ModelPair:
    post_source = Source(post_spec, "folder", post_spec) if post_spec else pair.post_source
    return dataclasses.replace(
        pair, pre_fingerprint=pre_fingerprint, post_fingerprint=post_fingerprint, post_source=post_source
    )


def test_export_names_tell_pairs_sharing_a_post_model_apart(tiny_pair):
    # The two pre fingerprints differ only at the start: a name from their tails would collide.
    first = _with_sources(tiny_pair, "folder:aaaa" + "0" * 12, tiny_pair.post_fingerprint)
    second = _with_sources(tiny_pair, "folder:bbbb" + "0" * 12, tiny_pair.post_fingerprint)
    assert export_name(first, (1, 2)) != export_name(second, (1, 2))
    assert export_name(first, (1, 2)) == export_name(dataclasses.replace(first), (1, 2))
    assert export_name(first, (1, 2)) != export_name(first, (1, 3))


def test_export_names_are_readable_and_a_single_safe_folder_name(tiny_pair):
    name = export_name(tiny_pair, (1, 2))
    post = Path(tiny_pair.post_source.spec).name
    assert name.startswith(f"slr-{post}-1-2-") and len(name.rsplit("-", 1)[1]) == 12
    hostile = _with_sources(tiny_pair, "a", "b", post_spec="../../etc/pass wd:x@" + "y" * 200)
    name = export_name(hostile, (0, 3))
    assert "/" not in name and " " not in name and not name.startswith(".")
    assert name.startswith("slr-pass-wd-x-") and len(name) < 80


def test_zip_folder_holds_the_folder_under_its_own_name(tmp_path):
    folder = tmp_path / "slr-Qwen2.5-0.5B-Instruct-1-2-0123456789ab"  # dots: the zip keeps the whole name
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "weights.bin").write_bytes(b"\x00\x01" * 100)
    old_mask = os.umask(0o022)
    try:
        archive = zip_folder(folder)
    finally:
        os.umask(old_mask)
    assert archive == tmp_path / f"{folder.name}.zip" and archive.stat().st_mode & 0o777 == 0o644
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == [f"{folder.name}/config.json", f"{folder.name}/sub/weights.bin"]
        assert opened.read(f"{folder.name}/sub/weights.bin") == b"\x00\x01" * 100
        assert {info.compress_type for info in opened.infolist()} == {zipfile.ZIP_STORED}
    (folder / "config.json").write_text('{"again": 1}')
    assert zip_folder(folder) == archive  # a second zip replaces the first
    with zipfile.ZipFile(archive) as opened:
        assert opened.read(f"{folder.name}/config.json") == b'{"again": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name, archive.name]  # no staging left


# ---------------------------------------------------------------- the app's export folder: quota, expiry, names


def _aged(path: Path, size: int, hours_old: float) -> Path:
    if path.suffix == ".zip":
        path.write_bytes(b"z" * size)
    else:
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"w" * (size - 10))
        (path / "config.json").write_bytes(b"c" * 10)
    stamp = time.time() - hours_old * 3600
    os.utime(path, (stamp, stamp))
    return path


def test_prune_removes_expired_exports_then_the_oldest_until_the_new_one_fits(tmp_path):
    expired = _aged(tmp_path / "slr-a.zip", 1000, 10)
    oldest = _aged(tmp_path / "slr-b", 1000, 5)  # a folder: counted whole
    newest = _aged(tmp_path / "slr-c.zip", 1000, 1)
    kept = _aged(tmp_path / "slr-d.zip", 1000, 20)  # the name being written: never removed
    policy = HostedPolicy(hosted=True, export_quota_bytes=3000, export_ttl_seconds=8 * 3600)
    removed = prune_exports(tmp_path, policy, incoming=1500, keep=("slr-d.zip",))
    assert removed == [expired, oldest]  # expired first; then the oldest, until 1000 + 1500 <= 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == [newest.name, kept.name]
    assert prune_exports(tmp_path, policy) == [kept]  # nothing kept any more: expired, so it goes
    with pytest.raises(ExportError, match="more than the whole export quota"):
        prune_exports(tmp_path, policy, incoming=3001)
    assert newest.exists()  # an export that cannot fit removes nothing


def test_publish_keeps_only_the_zip_in_hosted_mode_and_makes_room_in_the_quota(
    tiny_pair, landscape, tmp_path
):
    estimate = export_bytes(tiny_pair)
    root = tmp_path / "exports"
    root.mkdir()
    stale = _aged(root / "slr-older.zip", estimate, 1)
    policy = HostedPolicy(hosted=True, export_quota_bytes=estimate + estimate // 2)
    archive = publish_archive(tiny_pair, interval_restoration(1, 2), root, landscape, policy=policy)
    assert re.fullmatch(re.escape(export_name(tiny_pair, (1, 2))) + r"-[0-9a-f]{16}\.zip", archive.name)
    assert list(root.iterdir()) == [archive] and not stale.exists()  # no folder, and room was made
    assert archive.stat().st_size <= estimate  # the estimate the checks used is an upper bound here
    with zipfile.ZipFile(archive) as opened:
        assert f"{archive.stem}/config.json" in opened.namelist()
    opened_mode = publish_archive(tiny_pair, interval_restoration(1, 2), tmp_path / "open", landscape)
    assert sorted(p.name for p in opened_mode.parent.iterdir()) == [
        opened_mode.stem,
        opened_mode.name,
    ]  # locally: both


def test_publish_refuses_an_export_the_disk_cannot_hold_and_writes_nothing(tiny_pair, tmp_path, monkeypatch):
    import shutil

    from slr_core.export import writer as export

    monkeypatch.setattr(
        export.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12, 1000)
    )
    root = tmp_path / "exports"
    with pytest.raises(ExportError, match="Not enough free disk") as raised:
        publish_archive(tiny_pair, interval_restoration(0, 1), root, policy=HostedPolicy(hosted=True))
    assert f"needs about {2 * export_bytes(tiny_pair) / 2**20:.0f} MiB" in str(raised.value)
    assert "has 1000 bytes free" in str(raised.value)
    assert list(root.iterdir()) == []


def test_export_names_never_collide_across_pairs_and_restorations(tiny_pair):
    pairs = [
        _with_sources(tiny_pair, f"folder:{pre}" + "0" * 12, f"folder:{post}" + "0" * 12)
        for pre in ("aaaa", "bbbb")
        for post in ("cccc", "dddd")
    ]
    restorations = [
        interval_restoration(1, 2),
        interval_restoration(1, 3),
        interval_restoration(1, 2, "attention"),
        interval_restoration(1, 2, "mlp"),
        interval_restoration(1, 2, "layer", 0.5),
        Restoration((1, 3)),
    ]
    names = [export_name(pair, (r.layers[0], r.layers[-1]), r) for pair in pairs for r in restorations]
    assert len(set(names)) == len(pairs) * len(restorations)
    again = export_name(dataclasses.replace(pairs[0]), (1, 2), interval_restoration(1, 2))
    assert again == names[0]  # and the same export keeps its name


def test_mergekit_names_sources_that_resolve_off_the_server():
    from slr_core.export.mergekit_config import mergekit_reference
    from slr_core.models.sources import parse_source

    # The demo pair: paths inside the export, not the server's cache or the repo's adapter folder.
    assert mergekit_reference(parse_source("demo:pre"), "demo:pre")[0] == "demo-base"
    assert mergekit_reference(parse_source("demo:post"), "demo:post")[0] == "demo-base+demo-adapter"
    # A hub id: pinned to the commit that was loaded.
    hub = Source("org/model", "hub", "org/model")
    assert mergekit_reference(hub, "hub:org/model@0123abcd")[0] == "org/model@0123abcd"
