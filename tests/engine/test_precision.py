"""Weights kept apart from the compute dtype, and start-up checks that tell rounding from structure.

- Float32 compute on bfloat16-stored weights gives a float32 load's landscape (to 1e-6) for every
  family, at less resident memory (measured in fresh processes).
- In bfloat16 and float16 compute an intact model passes every start-up check, and a deliberately
  broken head, soft-cap, branch mask or branch position is still refused, for every family.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import FAMILIES
from tiny_pairs import make_pair

from slr_core.crc import branches
from slr_core.crc.prompts import default_prompts, encode_prompts
from slr_core.engine.cached_sweep import all_intervals
from slr_core.engine.sweep import Stats, make_batch, model_scores, sweep_intervals
from slr_core.errors import UnsupportedArchitectureError
from slr_core.models import architectures, precision
from slr_core.models.chat import end_of_turn_ids
from slr_core.models.loading import load_pair
from slr_core.models.settings import Settings, auto_cuda_compute
from slr_core.slr.hybrid import Restoration, build_restored
from slr_core.slr.soup import soup_model

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]
# A digit prompt and a letter prompt: different lengths, several branches each.
PROMPTS = [0, 22]


@pytest.fixture(scope="module")
def bf16_paths(tmp_path_factory):
    """family -> (pre, post) folders of a tiny pair stored in bfloat16."""
    built = {}

    def get(family: str) -> tuple[Path, Path]:
        if family not in built:
            built[family] = make_pair(tmp_path_factory.mktemp(f"{family}-bf16"), family, dtype=torch.bfloat16)
        return built[family]

    return get


def _scores(pair, strict_soup: bool = True) -> dict:
    encoded = encode_prompts(pair.tokenizer, default_prompts()).subset(PROMPTS)
    out = {
        (r.start, r.end): r.per_prompt for r in sweep_intervals(pair, encoded, all_intervals(pair.num_layers))
    }
    batch, end_ids = (
        make_batch(encoded, pair.tokenizer.pad_token_id, pair.device),
        end_of_turn_ids(pair.tokenizer),
    )
    out["post"] = model_scores(pair.post, encoded, batch, end_ids)
    out["pre"] = model_scores(pair.pre, encoded, batch, end_ids)
    if strict_soup:
        out["soup"] = model_scores(soup_model(pair, 0.3), encoded, batch, end_ids)
        blended = build_restored(pair, Restoration((1, 2), "attention", 0.5))
        out["lambda"] = model_scores(blended, encoded, batch, end_ids)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_float32_compute_on_bfloat16_weights_equals_a_float32_load(bf16_paths, family):
    pre, post = bf16_paths(family)
    full = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))
    split = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32", weights_dtype="bfloat16"))
    # The weights really stay in bfloat16 (no float32 copy is kept), and the pair says so.
    assert {p.dtype for p in split.post.parameters()} == {torch.bfloat16}
    assert (split.dtype, split.weights_dtype) == (torch.float32, torch.bfloat16)
    assert split.precision == "float32 on bfloat16 weights" and full.precision == "float32"
    assert split.identity != full.identity  # its own cache context
    ours, theirs = _scores(split), _scores(full)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-6, rtol=0, msg=f"{family} {key}")
    # Nothing stays upcast once the calls are over.
    assert {p.dtype for p in split.post.parameters()} == {torch.bfloat16}


def test_wider_weights_than_compute_are_refused_with_advice():
    from slr_core.errors import SourceError

    with pytest.raises(SourceError, match="--weights-dtype bfloat16"):
        Settings(device="cpu", dtype="bfloat16", weights_dtype="float32")
    assert Settings(device="cpu").torch_weights_dtype == torch.float32  # auto on the CPU: float32


def test_auto_on_cuda_computes_in_float32_only_where_it_fits():
    head = 262_144 * 2304  # Gemma-2-9B's LM head, the largest unit
    assert auto_cuda_compute(80 << 30, head) == torch.float32
    assert auto_cuda_compute(4 * head + (4 << 30) - 1, head) == torch.bfloat16


# ---------------------------------------------------------------- half-precision checks


def _wrong_head(monkeypatch, family):
    # A logit scaling the model's forward does not apply (as an unknown head transform would miss).
    real = architectures.describe

    def describe(model):
        arch = real(model)
        return dataclasses.replace(arch, multiplier=(arch.multiplier or 1.0) * 2.0)

    monkeypatch.setattr(architectures, "describe", describe)


def _wrong_softcap(monkeypatch, family):
    # Gemma 2's soft-cap dropped; every other family gets one its forward does not apply.
    real = architectures.describe

    def describe(model):
        arch = real(model)
        return dataclasses.replace(arch, softcap=None if arch.softcap else 0.5)

    monkeypatch.setattr(architectures, "describe", describe)


def _leaky_mask(monkeypatch, family):
    # Branches keep the left-to-right mask: each sees the branches before it.
    monkeypatch.setattr(branches, "_tree_mask", lambda mask, batch: mask)


def _wrong_position(monkeypatch, family):
    # Branches placed one position too far (L + 1 instead of L) in the position ids and rotary tables.
    real = branches._at_sources

    def shifted(value, batch, name):
        width = batch.num_tokens
        query = torch.arange(width, device=batch.source.device).expand_as(batch.source)
        moved = torch.where(batch.source != query, batch.source + 1, batch.source)
        return real(value, dataclasses.replace(batch, source=moved), name)

    monkeypatch.setattr(branches, "_at_sources", shifted)


BREAKS = {"head": _wrong_head, "softcap": _wrong_softcap, "mask": _leaky_mask, "position": _wrong_position}


# Weights initialised at std 0.2 instead of 0.02: a model at the default init attends almost
# uniformly, so a branch one position off moves its logits by about 1e-3, below bfloat16's own
# rounding; trained models (and these) attend sharply, where a structural fault is far beyond it.
SHARP = {"initializer_range": 0.2}


@pytest.fixture(scope="module")
def half_pairs(tmp_path_factory):
    """(family, dtype) -> a loaded tiny pair (sharp weights) computing in that half precision."""
    built, loaded = {}, {}

    def get(family: str, dtype: str):
        if family not in built:
            built[family] = make_pair(
                tmp_path_factory.mktemp(f"{family}-sharp"), family, config_changes=SHARP
            )
        if (family, dtype) not in loaded:
            pre, post = built[family]
            loaded[family, dtype] = load_pair(str(pre), str(post), Settings(device="cpu", dtype=dtype))
        return loaded[family, dtype]

    return get


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_half_precision_passes_intact_and_refuses_broken_models(half_pairs, family, dtype, monkeypatch):
    pair = half_pairs(family, dtype)
    encoded = encode_prompts(pair.tokenizer, default_prompts()).subset(PROMPTS)
    wanted = {(1, 2), (3, 3)}
    stats = Stats()
    with _no_fallback():
        scores = {(r.start, r.end): r.per_prompt for r in sweep_intervals(pair, encoded, wanted, stats=stats)}
    assert scores.keys() == wanted
    # The shared prefix and narrowed last layer were proven in this dtype too, not dropped.
    assert stats.layout.prefix > 0 and stats.layout.narrow_last, (family, dtype, stats.layout)
    for name, brake in BREAKS.items():
        with monkeypatch.context() as patch:
            brake(patch, family)
            try:
                list(sweep_intervals(pair, encoded, wanted))
            except UnsupportedArchitectureError as error:
                assert "structural mismatch, not rounding" in str(error), (name, str(error))
            else:
                pytest.fail(f"{family} in {dtype}: a broken {name} was not refused")


class _no_fallback:
    """Fail if the sweep dropped a proven layout (a warning 'not using ...')."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self._seen = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        fallbacks = [str(w.message) for w in self._seen if "not using" in str(w.message)]
        assert not fallbacks, fallbacks


def test_float32_checks_keep_their_tolerances(tiny_pair, monkeypatch):
    # No noise in float32: the same broken head is refused by the old 1e-3, named structural.
    _wrong_head(monkeypatch, "llama")
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()).subset(PROMPTS)
    with pytest.raises(UnsupportedArchitectureError, match="float32 tolerance 0.001: a structural"):
        list(sweep_intervals(tiny_pair, encoded, {(0, 0)}))
    assert precision.tolerance(1e-3, 0.0) == 1e-3


# ---------------------------------------------------------------- memory, in fresh processes

MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from slr_core.models.precision import peak_memory, resident_now
    torch.set_num_threads(1)
    from slr_core.crc.prompts import default_prompts, encode_prompts
    from slr_core.engine.sweep import sweep_intervals
    from slr_core.models.loading import load_pair
    from slr_core.models.settings import Settings
    before = resident_now()
    pair = load_pair(sys.argv[1], sys.argv[2], Settings(device="cpu", dtype="float32", weights_dtype=sys.argv[3]))
    encoded = encode_prompts(pair.tokenizer, default_prompts()).subset([0])
    scores = {f"{r.start}-{r.end}": r.per_prompt.tolist() for r in sweep_intervals(pair, encoded, {(0, 1), (2, 3)})}
    print(json.dumps({"added": peak_memory()["rss_bytes"] - before, "scores": scores}))
    """
)


def test_split_weights_take_less_resident_memory(tmp_path):
    # Wide enough that the weights, not the interpreter, dominate what the run adds.
    pre, post = make_pair(
        tmp_path,
        "llama",
        dtype=torch.bfloat16,
        config_changes={"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 8},
    )
    runs = {}
    for weights in ("float32", "bfloat16"):
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, str(pre), str(post), weights],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        )
        runs[weights] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs["bfloat16"]["scores"] == pytest.approx(runs["float32"]["scores"], abs=1e-6)
    assert runs["float32"]["added"] > 100 << 20, runs  # the float32 weights alone add about 400 MB
    ratio = runs["bfloat16"]["added"] / runs["float32"]["added"]
    assert ratio <= 0.85, (ratio, runs["bfloat16"]["added"], runs["float32"]["added"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_auto_split_and_half_precision(bf16_paths, tmp_path):
    pre, post = bf16_paths("gemma2")
    full = load_pair(str(pre), str(post), Settings(device="cuda", dtype="float32", weights_dtype="float32"))
    auto = load_pair(str(pre), str(post), Settings(device="cuda"))
    # auto on CUDA: bfloat16 weights, float32 compute where it fits (a tiny pair always does).
    assert (auto.dtype, auto.weights_dtype) == (torch.float32, torch.bfloat16)
    ours, theirs = _scores(auto), _scores(full)
    for key in theirs:
        torch.testing.assert_close(ours[key].cpu(), theirs[key].cpu(), atol=1e-6, rtol=0, msg=str(key))
    sharp = make_pair(tmp_path, "gemma2", config_changes=SHARP)
    half = load_pair(*map(str, sharp), Settings(device="cuda", dtype="bfloat16"))
    stats = Stats()
    encoded = encode_prompts(half.tokenizer, default_prompts()).subset(PROMPTS)
    assert len(list(sweep_intervals(half, encoded, {(1, 2)}, stats=stats))) == 1
    assert stats.layout.prefix > 0 and stats.layout.narrow_last


@pytest.mark.parametrize(("dtype", "weights"), [("bfloat16", "auto"), ("float32", "bfloat16")])
def test_cli_sweep_runs_and_marks_its_precision(bf16_paths, tmp_path, capsys, dtype, weights):
    from slr_core import cli

    pre, post = bf16_paths("gemma3")
    out = tmp_path / "l.csv"
    argv = ["sweep", "--pre", str(pre), "--post", str(post), "--out", str(out), "--device", "cpu"]
    code = cli.main([*argv, "--dtype", dtype, "--weights-dtype", weights, "--intervals", "1-2", "--no-cache"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "peak memory: resident" in printed.out
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert (meta["dtype"], meta["weights_dtype"]) == (dtype, "bfloat16")
    assert meta["half_precision"] is (dtype == "bfloat16")


def test_split_pair_samples_and_exports_in_the_checkpoints_dtype(bf16_paths, tmp_path):
    from export_fixtures import folder_tensors

    from slr_core.downstream.sampling import SamplingSettings, sample
    from slr_core.export.writer import export_restoration

    pre, post = bf16_paths("gemma2")
    full = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))
    split = load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32", weights_dtype="bfloat16"))
    # Sampling (generate, with its KV cache) draws the same replies as the float32 load.
    settings = SamplingSettings(num_samples=3, max_new_tokens=5, seed=0)
    prompt = "Generate a random letter from A to K."
    for a, b in (
        (split.post, full.post),
        (build_restored(split, Restoration((1, 2))), build_restored(full, Restoration((1, 2)))),
    ):
        assert sample(a, split.tokenizer, prompt, settings) == sample(b, full.tokenizer, prompt, settings)
    # An export with a lambda blend is written in bfloat16, as the checkpoint was, blended in float32.
    restoration = Restoration((1, 2), "mlp", 0.5)
    folder = export_restoration(split, restoration, tmp_path / "split")
    reference = export_restoration(full, restoration, tmp_path / "full")
    ours, theirs = folder_tensors(folder), folder_tensors(reference)
    assert {t.dtype for t in ours.values()} == {torch.bfloat16}
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[n], theirs[n].to(torch.bfloat16)) for n in ours)
