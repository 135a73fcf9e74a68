"""The naive paper-style loop against the shared-work sweep, on one pair in one run."""

from __future__ import annotations

import time

import torch

from .architectures import decoder_layers
from .cached_sweep import all_intervals
from .crc import EncodedPrompts
from .landscape import parse_intervals
from .models import ModelPair
from .sweep import Stats, naive_interval_scores, sweep_intervals


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def estimated_flops(pair: ModelPair, stats: Stats) -> float:
    """Matmul FLOPs: 2 x layer params per token-layer, 2 x V x d per LM-head row."""
    layer_params = sum(p.numel() for p in decoder_layers(pair.post)[0].parameters())
    head = pair.post.get_output_embeddings().weight
    return 2.0 * layer_params * stats.token_layer_evals + 2.0 * head.numel() * stats.head_rows


def run_benchmark(
    pair: ModelPair, encoded: EncodedPrompts, intervals: str | None = None, batch_tokens: int = 16384
) -> dict:
    """Time both on the same intervals, check they agree, print and return the figures."""
    wanted = parse_intervals(intervals, pair.num_layers) if intervals else all_intervals(pair.num_layers)
    device = pair.device
    print(f"pair: {pair.label}; N = {pair.num_layers}; {len(wanted)} intervals x {len(encoded)} prompts")
    print(f"device {device}, dtype {pair.dtype}, threads {torch.get_num_threads()}")
    sweep_stats = Stats()
    started = _now(device)
    swept = {
        (r.start, r.end): r.per_prompt
        for r in sweep_intervals(pair, encoded, wanted, batch_tokens, sweep_stats)
    }
    sweep_seconds = _now(device) - started
    naive_stats = Stats()
    started = _now(device)
    naive = {k: naive_interval_scores(pair, encoded, *k, naive_stats) for k in sorted(wanted)}
    naive_seconds = _now(device) - started
    worst = max((naive[k] - swept[k]).abs().max().item() for k in wanted)
    figures = {
        "intervals": len(wanted),
        "prompts": len(encoded),
        "naive_seconds": naive_seconds,
        "sweep_seconds": sweep_seconds,
        "speedup": naive_seconds / sweep_seconds,
        "naive_layer_evals": naive_stats.layer_evals,
        "sweep_layer_evals": sweep_stats.layer_evals,
        "naive_tflops": estimated_flops(pair, naive_stats) / 1e12,
        "sweep_tflops": estimated_flops(pair, sweep_stats) / 1e12,
        "max_abs_difference": worst,
        "agree_within_1e-4": worst <= 1e-4,
    }
    for name in ("naive", "sweep"):
        seconds, flops = figures[f"{name}_seconds"], figures[f"{name}_tflops"]
        print(
            f"{name:>5}: {seconds:9.2f} s, {figures[f'{name}_layer_evals']:>9,} decoder-layer evaluations "
            f"(per sequence), {flops:8.3f} TFLOP est., {flops * 1e3 / seconds:8.2f} GFLOP/s"
        )
    print(f"speedup {figures['speedup']:.1f}x; max |naive - sweep| over per-prompt Q and D = {worst:.2e}")
    print("results agree within 1e-4" if figures["agree_within_1e-4"] else "RESULTS DISAGREE")
    return figures
