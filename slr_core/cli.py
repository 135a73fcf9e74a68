"""`python -m slr_core`: sweep, best, prompts, bench, export, evaluate."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from .errors import SLRError
from .landscape import DEFAULT_RULE, RULES
from .settings import DEFAULT_Q_FRACTION, DEVICES, DTYPES
from .summary import summary_text


def _pair_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pre", default="demo:pre", help="pre-trained model: hub id[@rev], folder or .gguf")
    parser.add_argument(
        "--post", default="demo:post", help="post-trained model: hub id[@rev], folder or .gguf"
    )
    parser.add_argument("--preset", help="a named pair (overrides --pre/--post); see `presets`")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--dtype", default="auto", choices=DTYPES)
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--prompts", help="CRC prompt set JSON (default: the paper-style 40 prompts)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    parser.add_argument("--batch-tokens", type=int, default=16384, help="tokens per layer call (memory knob)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m slr_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="CRC quality and diversity of every interval, as CSV")
    _pair_arguments(sweep)
    sweep.add_argument("--out", default="landscape.csv")
    sweep.add_argument("--intervals", help="only these intervals, e.g. 0-3,5-9")
    sweep.add_argument("--soup", action="store_true", help="also score Proxy-Soup alphas 0..1")
    best = sub.add_parser("best", help="the selected interval under both rules (max D s.t. quality >= q_min)")
    _pair_arguments(best)
    best.add_argument(
        "--rule",
        choices=RULES,
        default=DEFAULT_RULE,
        help="strict: threshold strict quality (answer, then end of turn); paper: first-token Q",
    )
    best.add_argument(
        "--q-fraction", type=float, default=DEFAULT_Q_FRACTION, help="q_min = this x the post model's quality"
    )
    best.add_argument(
        "--q-min", type=float, help="an absolute q_min for --rule's quality (overrides --q-fraction)"
    )
    prompts = sub.add_parser("prompts", help="write the CRC prompt set as fed to a model")
    prompts.add_argument("--model", default="demo:post")
    prompts.add_argument("--prompts", help="a prompt set JSON to re-encode")
    prompts.add_argument("--out", required=True)
    bench = sub.add_parser("bench", help="time the naive paper-style loop against the sweep")
    _pair_arguments(bench)
    bench.add_argument("--intervals", help="limit both to these intervals")
    bench.add_argument("--num-prompts", type=int, help="use this many prompts, evenly spread (CPU time)")
    export = sub.add_parser("export", help="write a hybrid as a Hugging Face model folder")
    _pair_arguments(export)
    export.add_argument("--interval", type=int, nargs=2, metavar=("I", "J"), required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--overwrite", action="store_true")
    export.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload (needs HF_TOKEN)")
    evaluate = sub.add_parser("evaluate", help="downstream diversity: open-ended QA or writing")
    _pair_arguments(evaluate)
    evaluate.add_argument("--task", choices=["qa", "writing"], required=True)
    evaluate.add_argument("--quick", action="store_true", help="fewer questions and samples (CPU)")
    evaluate.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 1.5])
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", default="results.json")
    sub.add_parser("presets", help="list the named pairs")
    return parser


def _load(args):
    from .models import load_pair
    from .presets import get_preset
    from .settings import Settings

    if args.preset:
        preset = get_preset(args.preset)
        args.pre, args.post = preset.pre, preset.post
    settings = Settings(device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    return load_pair(args.pre, args.post, settings)


def _encoded(args, tokenizer):
    from .crc import default_prompts, encode_prompts, load_prompts

    prompts = load_prompts(args.prompts) if args.prompts else default_prompts()
    return encode_prompts(tokenizer, prompts)


def _landscape(args, pair, intervals=None, soup=False):
    from .cached_sweep import complete, survey
    from .landscape import parse_intervals

    wanted = parse_intervals(intervals, pair.num_layers) if intervals else None
    encoded = _encoded(args, pair.tokenizer)
    run = survey(pair, encoded, wanted, soup, not args.no_cache, args.batch_tokens)
    return complete(run)


def cmd_sweep(args) -> None:
    from .export import write_csv

    started = time.perf_counter()
    pair = _load(args)
    loaded = time.perf_counter()
    landscape = _landscape(args, pair, args.intervals, args.soup)
    swept = time.perf_counter()
    landscape.meta["command"] = shlex.join(["python", "-m", "slr_core", *args.argv])
    write_csv(landscape, args.out)
    print(f"pair: {pair.label}; N = {pair.num_layers} layers")
    print(
        f"loaded in {loaded - started:.1f} s; swept {len(landscape.intervals)} intervals in {swept - loaded:.1f} s"
    )
    _print_summary(landscape, DEFAULT_Q_FRACTION)
    print(f"wrote {args.out}")


def cmd_best(args) -> None:
    pair = _load(args)
    landscape = _landscape(args, pair)
    rule = args.rule if args.rule == "paper" or landscape.has_strict else "paper"
    fraction = args.q_fraction if args.q_min is None else args.q_min / landscape.post.rule_quality(rule)
    _print_summary(landscape, fraction)
    best = landscape.rule_summary(fraction, rule)["best"]
    picked = f"[{best['interval'][0]}, {best['interval'][1]}]" if best else "none (nothing reaches q_min)"
    print(f"selected ({rule} rule): {picked}")


def _print_summary(landscape, fraction: float) -> None:
    print(summary_text(landscape, fraction))


def cmd_prompts(args) -> None:
    from .crc import default_prompts, encode_prompts, load_prompts
    from .files import write_json
    from .models import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    prompts = load_prompts(args.prompts) if args.prompts else default_prompts()
    encoded = encode_prompts(tokenizer, prompts)
    rows = [
        {"instruction": p.instruction, "valid": list(p.valid), "input_ids": ids}
        for p, ids in zip(encoded.prompts, encoded.input_ids)
    ]
    write_json(args.out, rows)
    print(f"wrote {len(rows)} prompts to {args.out}")


def cmd_bench(args) -> None:
    from .benchmark import run_benchmark

    pair = _load(args)
    encoded = _encoded(args, pair.tokenizer)
    if args.num_prompts:
        step = max(1, len(encoded) // args.num_prompts)
        keep = list(range(0, len(encoded), step))[: args.num_prompts]
        encoded = encoded.subset(keep)
    run_benchmark(pair, encoded, args.intervals, args.batch_tokens)


def cmd_export(args) -> None:
    from .export import export_hybrid

    pair = _load(args)
    start, end = args.interval
    landscape = _landscape(args, pair)
    command = shlex.join(["python", "-m", "slr_core", *args.argv])
    folder = export_hybrid(pair, start, end, args.out, landscape, args.overwrite, command)
    print(f"wrote hybrid [{start}, {end}] to {folder}")
    if args.push_to_hub:
        from .hub import push_to_hub

        print(f"pushed to {push_to_hub(folder, args.push_to_hub)}")


def cmd_evaluate(args) -> None:
    from .evaluation import format_table, run_evaluation
    from .files import write_json

    pair = _load(args)
    landscape = _landscape(args, pair, soup=True)
    results = run_evaluation(pair, landscape, args.task, args.quick, args.temperatures, args.seed)
    write_json(args.out, results)
    print(format_table(results))
    print(f"wrote {args.out}")


def cmd_presets(_args) -> None:
    from .presets import PRESETS

    for preset in PRESETS.values():
        print(f"{preset.name}: pre={preset.pre} post={preset.post}")


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; a user error prints one clear line and exits 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in outputs so a result names the command that made it
    handler = globals()[f"cmd_{args.command}"]
    try:
        handler(args)
    except SLRError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: every result computed so far is in the cache", file=sys.stderr)
        return 130
    return 0
