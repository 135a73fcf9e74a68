"""Print the demo's stage comparison (README, "Where each stage of post-training hides diversity").

Reads the three shipped stage landscapes (assets/landscapes/demo.csv, demo-dpo.csv, demo-sft-dpo.csv);
with --samples it also loads the pairs and samples each pick and each post-trained model for one prompt.

Usage: python scripts/stage_comparison.py [--samples] [--prompt TEXT] [--num-samples 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from slr_core.engine.cached_sweep import SHIPPED_DIR
from slr_core.models.demo import STAGE_LABELS
from slr_core.report.difference import Difference, picks, read_landscape

PAIRS = {
    "base -> SFT": "demo.csv",
    "base -> DPO": "demo-dpo.csv",
    "SFT -> DPO": "demo-sft-dpo.csv",
}
PROMPT = "Generate a random integer in the range [0, 9]. Do not include anything else in your reply."
FRACTION = 0.9


def parse_arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", action="store_true", help="also sample each pick (loads the models)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    return parser.parse_args()


def row(name: str, point) -> str:
    """One Markdown table row of a model's CRC numbers."""
    return f"| {name} | {point.quality:.4f} | {point.strict_quality:.4g} | {point.stop:.4f} | {point.diversity:.4f} |"


def stages(landscapes: dict) -> None:
    """Each stage's Q, strict Q, stop and D, and the base's, as the landscapes' references."""
    print("| model | Q | strict Q | stop | D (nats) |\n|---|---|---|---|---|")
    print(row(STAGE_LABELS["pre"], landscapes["base -> SFT"].pre))
    print(row(STAGE_LABELS["post"], landscapes["base -> SFT"].post))
    print(row(STAGE_LABELS["dpo"], landscapes["base -> DPO"].post))
    # The same model measured in two sweeps must agree: a check on the shipped files themselves.
    base_twice = abs(landscapes["base -> DPO"].pre.diversity - landscapes["base -> SFT"].pre.diversity)
    print(f"\n(the base in two sweeps: |ΔD| {base_twice:.2g})")
    if "SFT -> DPO" in landscapes:
        sft_twice = abs(landscapes["SFT -> DPO"].pre.diversity - landscapes["base -> SFT"].post.diversity)
        print(f"(the SFT model in two sweeps: |ΔD| {sft_twice:.2g})")


def pair_picks(landscapes: dict) -> dict:
    """Each pair's pick under each rule, with its numbers; returns {(pair, rule): interval}."""
    print("\n| pair | rule | q_min | pick | Q | strict Q | stop | D |\n|---|---|---|---|---|---|---|---|")
    chosen = {}
    for name, landscape in landscapes.items():
        for rule, best in picks(landscape, FRACTION).items():
            q_min = landscape.q_min(FRACTION, rule)
            if best is None:
                print(f"| {name} | {rule} | {q_min:.4f} | none | | | | |")
                continue
            chosen[(name, rule)] = best
            p = landscape.intervals[best]
            print(
                f"| {name} | {rule} | {q_min:.4f} | [{best[0]}, {best[1]}] | {p.quality:.4f} | "
                f"{p.strict_quality:.4g} | {p.stop:.4f} | {p.diversity:.4f} |"
            )
    return chosen


def dpo_drops(landscapes: dict) -> None:
    """Where restoring base layers gives back less D after DPO than after SFT, and what SFT -> DPO shows."""
    difference = Difference(landscapes["base -> SFT"], landscapes["base -> DPO"])
    cells = ", ".join(f"[{i}, {j}] {d:+.4f}" for (i, j), d in difference.largest("diversity", 5))
    print(f"\nD of base -> DPO minus base -> SFT, lowest 5 cells: {cells}")
    highest = difference.largest("diversity", 3, lowest=False)
    print("highest 3 cells: " + ", ".join(f"[{i}, {j}] {d:+.4f}" for (i, j), d in highest))
    if "SFT -> DPO" not in landscapes:
        print("SFT -> DPO: not shipped yet")
        return
    sft_dpo = landscapes["SFT -> DPO"]
    post_d = sft_dpo.post.diversity
    ranked = sorted(sft_dpo.intervals.items(), key=lambda kv: -kv[1].diversity)[:5]
    gains = ", ".join(f"[{i}, {j}] {p.diversity - post_d:+.4f}" for (i, j), p in ranked)
    print(f"SFT -> DPO: D of the DPO model {post_d:.4f}; restoring SFT layers raises it most at: {gains}")
    spread = [p.diversity - post_d for p in sft_dpo.intervals.values()]
    print(f"SFT -> DPO: D change over all 171 intervals from {min(spread):+.4f} to {max(spread):+.4f}")


def samples(chosen: dict, arguments: argparse.Namespace) -> None:
    """Samples of each post-trained model and each pick for one prompt (loads the pairs)."""
    from slr_core.downstream.sampling import SamplingSettings, sample_replies
    from slr_core.models.loading import load_pair
    from slr_core.models.settings import Settings
    from slr_core.slr.hybrid import build_hybrid

    settings = SamplingSettings(arguments.num_samples, 0.1, 1.0, arguments.max_new_tokens, 0)
    print(f"\nSamples for {arguments.prompt!r} ({settings.as_dict()}):")
    for name, file in PAIRS.items():
        if not (SHIPPED_DIR / file).is_file():
            continue
        meta = read_landscape(SHIPPED_DIR / file).meta
        pair = load_pair(meta["pre"], meta["post"], Settings(device="cpu", dtype="float32"))
        models = {f"{name}: post-trained": pair.post}
        for rule in ("strict", "paper"):
            if (name, rule) in chosen:
                start, end = chosen[(name, rule)]
                models[f"{name}: {rule} pick [{start}, {end}]"] = build_hybrid(pair, start, end)
        for label, model in models.items():
            replies = sample_replies(model, pair.tokenizer, arguments.prompt, settings)
            shown = " | ".join(text.replace("\n", "\\n") for text in replies.texts)
            print(f"- {label} (stopped {sum(replies.ended)}/{len(replies.ended)}): {shown}")


def main() -> None:
    """Print the comparison."""
    arguments = parse_arguments()
    landscapes = {
        name: read_landscape(SHIPPED_DIR / file)
        for name, file in PAIRS.items()
        if (SHIPPED_DIR / file).is_file()
    }
    stages(landscapes)
    chosen = pair_picks(landscapes)
    dpo_drops(landscapes)
    if arguments.samples:
        samples(chosen, arguments)


if __name__ == "__main__":
    main()
