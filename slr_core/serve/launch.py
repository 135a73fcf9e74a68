"""The web app's launch flags (checked like the CLI's) and the default pair, loaded before serving."""

from __future__ import annotations

import argparse
import os
import sys
import time

from slr_core import inputs
from slr_core.errors import SLRError
from slr_core.models.device_maps import check_device_map
from slr_core.models.hosting import HostedPolicy
from slr_core.models.settings import DEVICES, DTYPES, Settings
from slr_core.serve.registry import PairRegistry

# The page takes one small file, a prompt set's JSON, so an upload (Gradio's /upload route is open on every
# app) stays small (a hosted server also caps the set's prompts and answers: inputs.PROMPT_SET_CAPS), and
# Gradio's cache of uploads and outputs is emptied: every hour, of files older than an hour.
MAX_UPLOAD = "1mb"
DELETE_CACHE = (3600, 3600)


def app_parser() -> argparse.ArgumentParser:
    """`python app.py`'s flags; host and port default to what a Space sets."""
    parser = argparse.ArgumentParser(description="SLR Explorer web app")
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    parser.add_argument(
        "--host", default=host, help=f"interface to listen on (default {host}; 0.0.0.0 for all)"
    )
    port_number = inputs.flag(inputs.whole_number, low=1, high=65535)
    parser.add_argument("--port", type=port_number, default=port, help=f"port (default {port})")
    parser.add_argument("--pre", help="pre-trained model: hub id[@rev], folder, .gguf or demo:pre")
    parser.add_argument("--post", help="post-trained model (same forms)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="compute dtype")
    parser.add_argument(
        "--weights-dtype",
        default="auto",
        choices=DTYPES,
        help="dtype the weights are kept in, upcast per call to --dtype (e.g. bfloat16 under float32)",
    )
    parser.add_argument(
        "--device-map",
        type=inputs.flag(check_device_map),
        help="spread each model over several devices with accelerate: auto, balanced, or a JSON map FILE",
    )
    return parser


def launch_settings(argv: list[str] | None) -> tuple[argparse.Namespace, Settings, HostedPolicy]:
    """Parsed flags, the Settings they ask for and the hosting policy; a bad one exits 2 with its message."""
    parser = app_parser()
    args = parser.parse_args(argv)
    if bool(args.pre) != bool(args.post):
        parser.error("give both --pre and --post, or neither")
    if args.pre:  # the page's default pair (session.default_sources reads these)
        os.environ["SLR_PRE"], os.environ["SLR_POST"] = args.pre, args.post
    try:  # the policy reads SLR_PRE/SLR_POST (the operator's pair is always allowed), so it comes after
        settings = Settings(
            device=args.device, dtype=args.dtype, weights_dtype=args.weights_dtype, device_map=args.device_map
        )
        return args, settings, HostedPolicy.from_env()
    except SLRError as error:
        parser.error(str(error))


def preload(registry: PairRegistry, pre: str, post: str, settings: Settings, explicit: bool) -> bool:
    """Load the default pair now, so a bad source is reported at once; False if an explicit pair failed."""
    started = time.perf_counter()
    try:
        registry.get((pre, post, settings))
    except SLRError as error:
        if explicit:  # a pair named on the command line that cannot load is a usage error
            print(f"error: {error}", file=sys.stderr)
            return False
        print(f"warning: the default pair did not load ({error}); pick another in the page", file=sys.stderr)
        return True
    print(f"loaded {pre} / {post} in {time.perf_counter() - started:.1f} s", flush=True)
    return True
