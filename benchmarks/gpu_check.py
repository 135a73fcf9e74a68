"""Everything a GPU session should check, in one go (about 8 minutes on one H100), as one Markdown table.

    python benchmarks/gpu_check.py [--out gpu_check.md] [--skip-tests]
    python benchmarks/gpu_check.py --dry-run      # the same code on the CPU at tiny shapes (seconds)

1. the tests that need CUDA (pytest, those that skip without a GPU);
2. the demo sweep (171 intervals and the soup, strict columns) in float32, float32 compute on
   bfloat16 weights, and bfloat16: time, peak GPU memory and max |d| of each column against float32;
3. random-weight pairs of the paper's shapes (Llama-3.1-8B, Qwen2.5-7B, Gemma-2-9B) on a subset of
   intervals, in each precision: time and peak GPU memory (a precision that does not fit says so).
With --dry-run, step 1 is skipped, the demo pair is replaced by a tiny random pair and the paper's
shapes are scaled down (same layer counts' pattern, tiny widths), all on the CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from slr_core.crc.prompts import default_prompts, encode_prompts  # noqa: E402
from slr_core.engine.cached_sweep import all_intervals, coarse_indices  # noqa: E402
from slr_core.engine.sweep import make_batch, model_scores, sweep_intervals  # noqa: E402
from slr_core.models import precision  # noqa: E402
from slr_core.models.loading import ModelPair, load_pair  # noqa: E402
from slr_core.models.settings import Settings  # noqa: E402
from slr_core.models.sources import Source  # noqa: E402
from slr_core.slr.soup import ALPHAS, soup_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# (compute dtype, weights dtype) per precision, as --dtype / --weights-dtype name them.
PRECISIONS = {
    "float32": ("float32", "float32"),
    "float32 on bfloat16 weights": ("float32", "bfloat16"),
    "bfloat16": ("bfloat16", "bfloat16"),
}
# The paper's pairs' shapes (their config.json values); the weights are random.
PAPER_SHAPES = {
    "Llama-3.1-8B": dict(
        family="llama",
        num_hidden_layers=32,
        hidden_size=4096,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        rope_theta=500000.0,
    ),
    "Qwen2.5-7B": dict(
        family="qwen2",
        num_hidden_layers=28,
        hidden_size=3584,
        intermediate_size=18944,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
    ),
    "Gemma-2-9B": dict(
        family="gemma2",
        num_hidden_layers=42,
        hidden_size=3584,
        intermediate_size=14336,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=256,
        vocab_size=256000,
        final_logit_softcapping=30.0,
        attn_logit_softcapping=50.0,
        sliding_window=4096,
    ),
}
COLUMNS = ("Q", "D", "stop", "strict Q")


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
    return f"{precision.peak_memory()['rss_bytes'] / 2**30:.2f} GiB RSS (process)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def scores(pair: ModelPair, encoded, wanted, soup: bool, alphas=ALPHAS) -> dict:
    """Per-prompt scores of each interval (and the soup points), keyed by name."""
    out = {f"[{r.start}, {r.end}]": r.per_prompt.float() for r in sweep_intervals(pair, encoded, wanted)}
    if soup:
        batch = make_batch(encoded, pair.tokenizer.pad_token_id, pair.device)
        from slr_core.models.chat import end_of_turn_ids

        for alpha in alphas:
            model = soup_model(pair, alpha)
            out[f"soup {alpha:.2f}"] = model_scores(
                model, encoded, batch, end_of_turn_ids(pair.tokenizer)
            ).float()
            del model
    return out


def deviations(ours: dict, reference: dict) -> list[str]:
    """max |d| of each column's mean over prompts, over every key both hold."""
    keys = ours.keys() & reference.keys()
    return [
        f"{max(abs(ours[k][:, c].mean() - reference[k][:, c].mean()).item() for k in keys):.4f}"
        for c in range(len(COLUMNS))
    ]


def demo_rows(device: torch.device, dry_run: bool, tiny_root: Path) -> list[list[str]]:
    """The demo pair (a tiny random pair with --dry-run) swept in every precision."""
    rows, reference = [], None
    for name, (compute, weights) in PRECISIONS.items():
        settings = Settings(device=device.type, dtype=compute, weights_dtype=weights)
        pre, post = ("demo:pre", "demo:post") if not dry_run else _tiny_pair(tiny_root)
        pair = load_pair(pre, post, settings)
        encoded = encode_prompts(pair.tokenizer, default_prompts())
        if dry_run:
            encoded = encoded.subset(coarse_indices(len(encoded), 4))
        _reset_peak(device)
        started = time.perf_counter()
        alphas = ALPHAS if not dry_run else ALPHAS[::10]  # the dry run: alpha 0, 0.5 and 1
        result = scores(pair, encoded, all_intervals(pair.num_layers), soup=True, alphas=alphas)
        _sync(device)
        seconds = time.perf_counter() - started
        reference = reference or result
        label = "demo pair" if not dry_run else "tiny pair (dry run)"
        rows.append(
            [label, name, f"{len(result)}", f"{seconds:.1f} s", _peak(device), *deviations(result, reference)]
        )
        del pair
    return rows


def _tiny_pair(root: Path) -> tuple[str, str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_pairs import make_pair

    if not (root / "llama-post").is_dir():
        make_pair(root, "llama", dtype=torch.bfloat16)
    return str(root / "llama-pre"), str(root / "llama-post")


def random_pair(shape: dict, device: torch.device, weights: torch.dtype, compute: torch.dtype, tokenizer):
    """Two random models of `shape` (pre, and post = pre + noise in the layers), built on `device`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    options = {k: v for k, v in shape.items() if k != "family"}
    config = AutoConfig.for_model(shape["family"], **options, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    config.tie_word_embeddings = shape["family"] == "gemma2"
    models = []
    previous = torch.get_default_dtype()
    for seed in (0, 1):  # two independent random models: the pair only needs equal shapes
        torch.manual_seed(seed)
        torch.set_default_dtype(weights)
        try:
            with device:
                model = AutoModelForCausalLM.from_config(config).eval()
        finally:
            torch.set_default_dtype(previous)
        models.append(precision.split(model, weights, compute))
    source = Source("random", "folder", "random")
    label = f"random {shape['family']} pair"
    return ModelPair(
        models[0], models[1], tokenizer, source, source, Settings(device=device.type), label=label
    )


def paper_rows(device: torch.device, dry_run: bool, tokenizer) -> list[list[str]]:
    """Random pairs of the paper's shapes, on the intervals of the last four layers, 8 prompts."""
    rows = []
    for name, shape in PAPER_SHAPES.items():
        if dry_run:  # same families and head transforms, tiny widths
            shape = dict(shape, num_hidden_layers=4, hidden_size=64, intermediate_size=128, vocab_size=512)
            shape.update(
                num_attention_heads=4,
                num_key_value_heads=2,
                **({"head_dim": 16} if "head_dim" in shape else {}),
            )
        depth = shape["num_hidden_layers"]
        wanted = {(i, j) for i in range(depth - 4, depth) for j in range(i, depth)}
        reference = None
        for label, (compute, weights) in PRECISIONS.items():
            _reset_peak(device)
            try:
                pair = random_pair(shape, device, getattr(torch, weights), getattr(torch, compute), tokenizer)
                encoded = encode_prompts(tokenizer, default_prompts()).subset(list(range(8)))
                started = time.perf_counter()
                result = scores(pair, encoded, wanted, soup=False)
                _sync(device)
                seconds, peak = time.perf_counter() - started, _peak(device)
                reference = reference or result
                numbers = deviations(result, reference)
                del pair
            except torch.cuda.OutOfMemoryError:
                import gc

                gc.collect()  # the half-built pair is unreachable once the handler ends
                seconds, peak, numbers = None, "does not fit", ["-"] * len(COLUMNS)
            time_text = f"{seconds:.1f} s" if seconds is not None else "-"
            rows.append(
                [
                    f"{name} shape, random",
                    label,
                    f"{len(wanted)}",
                    time_text,
                    _peak(device) if seconds else peak,
                    *numbers,
                ]
            )
            _reset_peak(device)
    return rows


def cuda_tests() -> list[list[str]]:
    """pytest on the tests that exercise CUDA (they skip on a CPU-only machine)."""
    tests = ["tests/engine/test_precision.py", "tests/models/test_placement.py"]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-k", "cuda", *tests], cwd=ROOT, capture_output=True, text=True
    )
    last = (done.stdout.strip().splitlines() or ["no output"])[-1]
    return [["CUDA tests", "-", "-", f"{time.perf_counter() - started:.1f} s", "-", last, "", "", ""]]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes: checks the script itself")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    parser.add_argument(
        "--tiny-root", default="/tmp/slr-gpu-check", help="where --dry-run keeps its tiny pair"
    )
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run with --dry-run to check the script on the CPU")
    device = torch.device("cpu" if args.dry_run else "cuda")
    started = time.perf_counter()
    rows = [] if args.dry_run or args.skip_tests else cuda_tests()
    rows += demo_rows(device, args.dry_run, Path(args.tiny_root))
    tokenizer = load_pair(*_tiny_pair(Path(args.tiny_root)), Settings(device="cpu")).tokenizer
    rows += paper_rows(device, args.dry_run, tokenizer)
    machine = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU (dry run)"
    header = ["pair", "precision", "results", "time", "peak memory", *(f"max abs d {c}" for c in COLUMNS)]
    lines = [
        f"`benchmarks/gpu_check.py` on {machine}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"torch {torch.__version__}; deviations against float32 of the same pair "
        f"(whole run {time.perf_counter() - started:.0f} s)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return table


if __name__ == "__main__":
    main()
