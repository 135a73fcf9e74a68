"""`python -m slr_core`: sweep, merge, diff, best, prompts, bench, export, evaluate."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from slr_core.engine.shards import parse_shard
from slr_core.errors import SLRError
from slr_core.inputs import flag, output_file, q_fraction, q_min, real_number, seed, temperature, whole_number
from slr_core.models.device_maps import check_device_map
from slr_core.models.settings import DEFAULT_Q_FRACTION, DEVICES, DTYPES
from slr_core.slr.intervals import RESTORE_MODES
from slr_core.slr.landscape import DEFAULT_RULE, RULES


def _pair_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pre", default="demo:pre", help="pre-trained model: hub id[@rev], folder or .gguf")
    parser.add_argument(
        "--post", default="demo:post", help="post-trained model: hub id[@rev], folder or .gguf"
    )
    parser.add_argument("--preset", help="a named pair (overrides --pre/--post); see `presets`")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="compute dtype")
    parser.add_argument(
        "--weights-dtype",
        default="auto",
        choices=DTYPES,
        help="dtype the weights are kept in, upcast per call to --dtype (bfloat16 with --dtype float32: "
        "float32 numbers of a bfloat16 checkpoint at half the weight memory)",
    )
    parser.add_argument(
        "--device-map",
        type=flag(check_device_map),
        metavar="auto|balanced|FILE",
        help="spread each model over several devices with accelerate (FILE: a JSON module -> device map)",
    )
    parser.add_argument("--trust-remote-code", action="store_true")
    _prompts_argument(parser)
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    parser.add_argument(
        "--batch-tokens",
        type=flag(whole_number, low=1),
        default=16384,
        help="tokens per layer call (memory knob)",
    )


def _prompts_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prompts",
        metavar="paper|open|FILE",
        help="the prompt set: paper (the paper's 40 digit/letter prompts, the default), open (open answers: "
        "words, names, numbers), or a JSON file of {instruction, valid: [answers]}",
    )


def _restore_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--restore",
        choices=RESTORE_MODES,
        default="layer",
        help="what comes back in each restored layer: the whole layer, attention only, or MLP only",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m slr_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="CRC quality and diversity of every interval, as CSV")
    _pair_arguments(sweep)
    sweep.add_argument("--out", type=flag(output_file), default="landscape.csv")
    sweep.add_argument("--intervals", type=flag(interval_list), help="only these intervals, e.g. 0-3,5-9")
    sweep.add_argument("--soup", action="store_true", help="also score Proxy-Soup alphas 0..1")
    sweep.add_argument(
        "--shard",
        type=flag(parse_shard),
        metavar="K/N|auto",
        help="only part K of N (auto: from torchrun's RANK/WORLD_SIZE); writes OUT.shard-K-of-N.csv for merge",
    )
    _restore_argument(sweep)
    merge = sub.add_parser("merge", help="join the parts of a `sweep --shard K/N` run into one landscape CSV")
    merge.add_argument("parts", nargs="+", metavar="PART", help="every part's CSV (its .meta.json beside it)")
    merge.add_argument("--out", type=flag(output_file), required=True)
    diff = sub.add_parser(
        "diff", help="two landscape CSVs on one interval grid: B - A per interval, and picks"
    )
    diff.add_argument("first", metavar="A", help="a landscape CSV from `sweep` (its .meta.json beside it)")
    diff.add_argument("second", metavar="B", help="another, of the same prompt set, restore mode and depth")
    diff.add_argument("--out", type=flag(output_file), required=True)
    diff.add_argument("--q-fraction", type=flag(q_fraction), default=DEFAULT_Q_FRACTION)
    best = sub.add_parser("best", help="the selected interval under both rules (max D s.t. quality >= q_min)")
    _pair_arguments(best)
    best.add_argument(
        "--rule",
        choices=RULES,
        default=DEFAULT_RULE,
        help="strict: max D s.t. strict quality (answer, then end of turn) >= q_min; paper: first-token Q; "
        "answer: max answer diversity (over whole answers that end the reply) s.t. strict quality >= q_min",
    )
    threshold = best.add_mutually_exclusive_group()
    threshold.add_argument(
        "--q-fraction",
        type=flag(q_fraction),
        default=DEFAULT_Q_FRACTION,
        help="q_min = this x the post model's quality",
    )
    threshold.add_argument("--q-min", type=flag(q_min), help="an absolute q_min for --rule's quality")
    _restore_argument(best)
    prompts = sub.add_parser("prompts", help="write the CRC prompt set as fed to a model")
    prompts.add_argument("--model", default="demo:post")
    _prompts_argument(prompts)
    prompts.add_argument("--out", type=flag(output_file), required=True)
    bench = sub.add_parser("bench", help="time the fair naive loop against the sweep")
    _pair_arguments(bench)
    bench.add_argument("--intervals", type=flag(interval_list), help="limit both to these intervals")
    bench.add_argument(
        "--crc",
        choices=["first-token", "strict", "both"],
        default="both",
        help="time first-token CRC (Q, D), strict CRC (with stop, strict quality), or both",
    )
    bench.add_argument(
        "--num-prompts",
        type=flag(whole_number, low=1),
        help="use this many prompts, evenly spread (CPU time)",
    )
    export = sub.add_parser("export", help="write a hybrid as a Hugging Face model folder")
    _pair_arguments(export)
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--interval", type=flag(whole_number, low=0), nargs=2, metavar=("I", "J"))
    which.add_argument("--layers", help="any set of layers instead of an interval, e.g. 3,5,9-11")
    _restore_argument(export)
    export.add_argument(
        "--fraction",
        type=flag(real_number, low=0, high=1, low_open=True),
        default=1.0,
        help="lambda in (0, 1]: (1-λ)·post + λ·pre",
    )
    export.add_argument("--out", required=True)
    export.add_argument("--overwrite", action="store_true")
    export.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload (needs HF_TOKEN)")
    evaluate = sub.add_parser("evaluate", help="downstream diversity: open-ended QA or writing")
    _pair_arguments(evaluate)
    evaluate.add_argument("--task", choices=["qa", "writing"], required=True)
    evaluate.add_argument("--quick", action="store_true", help="fewer questions and samples (CPU)")
    evaluate.add_argument("--temperatures", type=flag(temperature), nargs="+", default=[1.0, 1.5])
    evaluate.add_argument("--seed", type=flag(seed), default=0)
    evaluate.add_argument("--out", type=flag(output_file), default="results.json")
    chosen = "sample post and SLR on these intervals, not the landscape's picks (no sweep needed)"
    evaluate.add_argument("--intervals", type=flag(interval_list), help=chosen)
    evaluate.add_argument("--no-soup", action="store_true", help="leave out Proxy-Soup and its sweep")
    sub.add_parser("presets", help="list the named pairs")
    demo_base = sub.add_parser(
        "demo-base",
        help="write the demo pair's base model as a folder (what a demo export's mergekit.yaml names)",
    )
    demo_base.add_argument("out", help="a new (or empty) folder, e.g. demo-base inside an export")
    return parser


def interval_list(text: str, name: str = "") -> str:
    """--intervals as typed, once its form ('0-3,5-9,7') reads; the bounds wait for the model's depth."""
    from slr_core.slr.intervals import parse_intervals

    parse_intervals(text)
    return text


def _sources(args):
    """The pair's sources, from --preset or --pre/--post, checked without loading anything."""
    from slr_core.models.presets import get_preset
    from slr_core.models.sources import parse_source

    if args.preset:
        preset = get_preset(args.preset)
        args.pre, args.post = preset.pre, preset.post
    return parse_source(args.pre), parse_source(args.post)


def _prompt_set(args) -> list:
    """The CRC prompts of --prompts (a shipped set's name, or a file read and checked once); default paper."""
    from slr_core.crc.prompt_sets import prompt_set

    if getattr(args, "prompt_set", None) is None:
        args.prompt_set = prompt_set(args.prompts)
    return args.prompt_set


def _load(args):
    """The pair, loaded once everything that needs no model checks out: sources, device, prompt set."""
    _sources(args)  # first: a mistyped source is the commonest mistake, and this needs no torch
    from slr_core.models.loading import load_pair
    from slr_core.models.settings import Settings

    settings = Settings(
        device=args.device,
        dtype=args.dtype,
        weights_dtype=args.weights_dtype,
        trust_remote_code=args.trust_remote_code,
        device_map=args.device_map,
    )
    _prompt_set(args)
    return load_pair(args.pre, args.post, settings)


def _encoded(args, tokenizer):
    from slr_core.crc.prompts import encode_prompts

    return encode_prompts(tokenizer, _prompt_set(args))


def _landscape(args, pair, intervals=None, soup=False, shard=None):
    from slr_core.engine.cached_sweep import all_intervals, complete, survey
    from slr_core.slr.intervals import parse_intervals

    wanted = parse_intervals(intervals, pair.num_layers) if intervals else None
    if shard is not None:  # shard 1 alone scores the references and the soup: each is written once
        wanted = shard.intervals(wanted or all_intervals(pair.num_layers))
    references = shard is None or shard.is_first
    encoded = _encoded(args, pair.tokenizer)
    how = (soup and references, not args.no_cache, args.batch_tokens)
    mode = getattr(args, "restore", "layer")
    return complete(survey(pair, encoded, wanted, *how, mode=mode, references=references))


def cmd_sweep(args) -> None:
    started = time.perf_counter()
    if args.shard and not args.device_map:
        from slr_core.engine.shards import local_device

        args.device = local_device(args.device)  # one GPU per process when a launcher started several
    pair = _load(args)
    loaded = time.perf_counter()
    landscape = _landscape(args, pair, args.intervals, args.soup, args.shard)
    swept = time.perf_counter()
    from slr_core.export.writer import write_csv  # not on top: bad arguments are refused before torch loads

    command = shlex.join(["python", "-m", "slr_core", *args.argv])
    landscape.meta.update(command=command, prompts=(args.prompts or "paper").strip())
    out = args.shard.part_path(args.out) if args.shard else args.out
    if args.shard:
        landscape.meta["shard"] = args.shard.provenance(args.intervals, args.soup, pair.num_layers)
    write_csv(landscape, out)
    from slr_core.models.precision import describe_peak

    print(f"pair: {pair.label}; N = {pair.num_layers} layers; restore: {args.restore}; {pair.precision}")
    print(
        f"loaded in {loaded - started:.1f} s; swept {len(landscape.intervals)} intervals in {swept - loaded:.1f} s; "
        f"{describe_peak()}"
    )
    if args.shard:
        print(f"shard {args.shard.label}: join all {args.shard.count} parts with `python -m slr_core merge`")
    else:
        _print_summary(landscape, DEFAULT_Q_FRACTION)
    print(f"wrote {out}")


def cmd_merge(args) -> None:
    from slr_core.engine.shards import merge_parts
    from slr_core.export.writer import write_csv

    landscape = merge_parts(args.parts)  # its meta keeps the parts' prompt set
    landscape.meta["command"] = shlex.join(["python", "-m", "slr_core", *args.argv])
    write_csv(landscape, args.out)
    print(
        f"merged {len(args.parts)} parts: {len(landscape.intervals)} intervals, {len(landscape.soup)} soup points"
    )
    _print_summary(landscape, DEFAULT_Q_FRACTION)
    print(f"wrote {args.out}")


def cmd_diff(args) -> None:
    from slr_core.files import write_csv
    from slr_core.report.difference import DIFF_COLUMNS, Difference, picks_text, read_landscape

    difference = Difference(read_landscape(args.first), read_landscape(args.second))
    rows = difference.rows()
    write_csv(args.out, rows, DIFF_COLUMNS)
    print(picks_text(difference, args.q_fraction))
    print(f"wrote {len(rows)} intervals (B - A) to {args.out}")


def cmd_best(args) -> None:
    pair = _load(args)
    landscape = _landscape(args, pair)
    from slr_core.report.summary import best_text  # imports torch: not before the arguments are checked

    print(best_text(landscape, args.rule, args.q_fraction, args.q_min))


def _print_summary(landscape, fraction: float) -> None:
    from slr_core.report.summary import summary_text  # imports torch: not before the arguments are checked

    print(summary_text(landscape, fraction))


def cmd_prompts(args) -> None:
    from slr_core.crc.prompts import encode_prompts
    from slr_core.files import write_json
    from slr_core.models.loading import load_tokenizer

    prompts = _prompt_set(args)
    tokenizer = load_tokenizer(args.model)
    encoded = encode_prompts(tokenizer, prompts)
    rows = [
        {"instruction": p.instruction, "valid": list(p.valid), "input_ids": ids}
        for p, ids in zip(encoded.prompts, encoded.input_ids)
    ]
    write_json(args.out, rows)
    print(f"wrote {len(rows)} prompts to {args.out}")


def cmd_bench(args) -> None:
    if args.num_prompts:
        whole_number(args.num_prompts, "--num-prompts", 1, len(_prompt_set(args)))
    pair = _load(args)
    from slr_core.engine.benchmark import run_benchmark

    encoded = _encoded(args, pair.tokenizer)
    if args.num_prompts:
        step = max(1, len(encoded) // args.num_prompts)
        keep = list(range(0, len(encoded), step))[: args.num_prompts]
        encoded = encoded.subset(keep)
    run_benchmark(pair, encoded, args.intervals, args.batch_tokens, args.crc)


def cmd_export(args) -> None:
    from slr_core.export.writer import export_restoration
    from slr_core.slr.hybrid import Restoration, interval_restoration
    from slr_core.slr.intervals import check_interval, parse_layers

    _check_export(args)
    pair = _load(args)
    if args.layers:
        restoration = Restoration(parse_layers(args.layers, pair.num_layers), args.restore, args.fraction)
    else:
        check_interval(*args.interval, pair.num_layers)
        restoration = interval_restoration(*args.interval, args.restore, args.fraction)
    restoration.check(pair.num_layers)
    landscape = _landscape(args, pair)
    command = shlex.join(["python", "-m", "slr_core", *args.argv])
    folder = export_restoration(pair, restoration, args.out, landscape, args.overwrite, command)
    print(f"wrote hybrid {restoration.label} to {folder}")
    if args.push_to_hub:
        from slr_core.export.hub import push_to_hub

        print(f"pushed to {push_to_hub(folder, args.push_to_hub)}")


def _check_export(args) -> None:
    """What export can check before loading: the interval's order, the target folder, the Hub push."""
    from slr_core.errors import IntervalError
    from slr_core.export.writer import check_target

    if args.interval and args.interval[0] > args.interval[1]:
        start, end = args.interval
        raise IntervalError(f"--interval {start} {end} ends before it starts: give I <= J (0-based).")
    check_target(args.out, args.overwrite, _sources(args))
    if args.push_to_hub:
        from slr_core.export.hub import check_push_access

        check_push_access(args.push_to_hub)


def cmd_evaluate(args) -> None:
    from slr_core.inputs import temperatures

    args.temperatures = temperatures(args.temperatures)  # distinct and capped, before any model loads
    pair = _load(args)
    from slr_core.downstream.evaluation import format_table, interval_methods, run_evaluation
    from slr_core.files import write_json
    from slr_core.slr.intervals import parse_intervals

    landscape, methods = None, None
    if args.intervals:
        methods = interval_methods(parse_intervals(args.intervals, pair.num_layers))
    else:  # soup points stored earlier are not evaluated under --no-soup either
        landscape = _landscape(args, pair, soup=not args.no_soup)
        landscape.soup = {} if args.no_soup else landscape.soup
    how = (args.task, args.quick, args.temperatures, args.seed)
    results = run_evaluation(pair, landscape, *how, methods=methods)
    write_json(args.out, results)
    print(format_table(results))
    print(f"wrote {args.out}")


def cmd_demo_base(args) -> None:
    from slr_core.models.demo import write_demo_base

    print(f"wrote the demo's base model to {write_demo_base(args.out)}")


def cmd_presets(_args) -> None:
    from slr_core.models.presets import PRESETS

    for preset in PRESETS.values():
        print(f"{preset.name}: pre={preset.pre} post={preset.post}")


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; a user error prints one clear line and exits 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in outputs so a result names the command that made it
    handler = globals()[f"cmd_{args.command.replace('-', '_')}"]  # demo-base -> cmd_demo_base
    try:
        handler(args)
    except SLRError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: every result computed so far is in the cache", file=sys.stderr)
        return 130
    return 0
