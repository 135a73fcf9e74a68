"""The fair naive loop against the shared-work sweep, on one pair in one run: time, work, agreement."""

from __future__ import annotations

import time

import torch

from slr_core.crc.prompts import EncodedPrompts
from slr_core.engine.cached_sweep import all_intervals
from slr_core.engine.naive import fair_interval_scores
from slr_core.engine.stack import Stats
from slr_core.engine.sweep import sweep_intervals
from slr_core.models.architectures import block_name, decoder_layers
from slr_core.models.loading import ModelPair
from slr_core.models.precision import describe_peak
from slr_core.slr.intervals import parse_intervals

TOLERANCE = 1e-5
PHASES = ("capture", "checks", "extension", "tails", "head")


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def estimated_flops(pair: ModelPair, stats: Stats) -> float:
    """Matmul FLOPs: 2 x layer params per token-layer (less skipped MLPs), 2 x V x d per LM-head row."""
    layer = decoder_layers(pair.post)[0]
    layer_params = sum(p.numel() for p in layer.parameters())
    mlp_params = sum(p.numel() for p in layer._modules[block_name(layer, "mlp")].parameters())
    head = pair.post.get_output_embeddings().weight
    layers = layer_params * stats.token_layer_evals - mlp_params * stats.mlp_tokens_skipped
    return 2.0 * layers + 2.0 * head.numel() * stats.head_rows


def time_sweep(pair: ModelPair, encoded: EncodedPrompts, wanted, batch_tokens: int, strict: bool, **options):
    """(seconds, stats, {interval: per-prompt scores}) of one sweep."""
    stats = Stats()
    started = _now(pair.device)
    swept = {
        (r.start, r.end): r.per_prompt
        for r in sweep_intervals(pair, encoded, wanted, batch_tokens, stats, strict=strict, **options)
    }
    return _now(pair.device) - started, stats, swept


def time_naive(pair: ModelPair, encoded: EncodedPrompts, wanted, strict: bool):
    """(seconds, stats, {interval: per-prompt scores}) of the fair naive loop."""
    stats = Stats()
    started = _now(pair.device)
    naive = {k: fair_interval_scores(pair, encoded, *k, stats, strict=strict) for k in sorted(wanted)}
    return _now(pair.device) - started, stats, naive


def run_benchmark(
    pair: ModelPair,
    encoded: EncodedPrompts,
    intervals: str | None = None,
    batch_tokens: int = 16384,
    crc: str = "both",
) -> dict:
    """Time sweep and fair naive loop on the same intervals (first-token CRC, strict CRC or both)."""
    wanted = parse_intervals(intervals, pair.num_layers) if intervals else all_intervals(pair.num_layers)
    print(f"pair: {pair.label}; N = {pair.num_layers}; {len(wanted)} intervals x {len(encoded)} prompts")
    print(f"device {pair.device}, dtype {pair.precision}, threads {torch.get_num_threads()}")
    kinds = {"first-token": [False], "strict": [True], "both": [False, True]}[crc]
    return {
        ("strict" if strict else "first-token"): _compare(pair, encoded, wanted, batch_tokens, strict)
        for strict in kinds
    }


def _compare(pair: ModelPair, encoded: EncodedPrompts, wanted, batch_tokens: int, strict: bool) -> dict:
    name = "strict CRC (Q, D, stop, strict quality)" if strict else "first-token CRC (Q, D)"
    print(f"--- {name}")
    sweep_seconds, sweep_stats, swept = time_sweep(pair, encoded, wanted, batch_tokens, strict)
    naive_seconds, naive_stats, naive = time_naive(pair, encoded, wanted, strict)
    # The fair loop gives the four single-token columns; the sweep adds answer_diversity.
    worst = max((naive[k] - swept[k][:, : naive[k].shape[1]]).abs().max().item() for k in wanted)
    figures = {
        "intervals": len(wanted),
        "prompts": len(encoded),
        "naive_seconds": naive_seconds,
        "sweep_seconds": sweep_seconds,
        "speedup": naive_seconds / sweep_seconds,
        "naive_tflops": estimated_flops(pair, naive_stats) / 1e12,
        "sweep_tflops": estimated_flops(pair, sweep_stats) / 1e12,
        "layout": str(sweep_stats.layout),
        "phases": _phases(sweep_stats, sweep_seconds),
        "max_abs_difference": worst,
        f"agree_within_{TOLERANCE:g}": worst <= TOLERANCE,
    }
    figures["flop_ratio"] = figures["naive_tflops"] / figures["sweep_tflops"]
    _print(figures)
    return figures


def _phases(stats: Stats, total: float) -> dict[str, float]:
    phases = {phase: stats.seconds.get(phase, 0.0) for phase in PHASES}
    phases["python/other"] = total - sum(phases.values())
    # Of extension + tails: the layers' own forwards; the rest is argument cutting, copies, Python.
    phases["(layer forwards)"] = stats.seconds.get("layer calls", 0.0)
    return phases


def _print(figures: dict) -> None:
    for name in ("naive", "sweep"):
        seconds, flops = figures[f"{name}_seconds"], figures[f"{name}_tflops"]
        print(f"{name:>5}: {seconds:9.2f} s, {flops:8.3f} TFLOP est., {flops * 1e3 / seconds:8.2f} GFLOP/s")
    print(f"sweep layout: {figures['layout']}")
    total = figures["sweep_seconds"]
    print(
        "sweep phases: " + ", ".join(f"{k} {v:.2f} s ({v / total:.0%})" for k, v in figures["phases"].items())
    )
    print(f"achieved ratio {figures['speedup']:.2f}x; FLOP-count ratio {figures['flop_ratio']:.2f}x")
    agree = figures[f"agree_within_{TOLERANCE:g}"]
    print(f"max |naive - sweep| over per-prompt scores = {figures['max_abs_difference']:.2e}")
    print(f"results agree within {TOLERANCE:g}" if agree else f"RESULTS DISAGREE (tolerance {TOLERANCE:g})")
    print(describe_peak())
