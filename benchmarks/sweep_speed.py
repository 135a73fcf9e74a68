"""Naive loop vs shared-work sweep on random-weight pairs of real model shapes (e.g. on a GPU).

Speed depends on shapes, not weight values, so a random pair with a real config and tokenizer
times the sweep honestly where the real weights cannot be had. Usage:
    python benchmarks/sweep_speed.py --config DIR [--layers N] [--device cuda] [--dtype float32]
where DIR holds a config.json and a tokenizer (e.g. the cached demo snapshot).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from slr_core.crc.prompts import default_prompts, encode_prompts  # noqa: E402
from slr_core.engine.benchmark import run_benchmark  # noqa: E402
from slr_core.models.architectures import decoder_layers  # noqa: E402
from slr_core.models.chat import ensure_chat_template  # noqa: E402
from slr_core.models.loading import ModelPair  # noqa: E402
from slr_core.models.settings import Settings  # noqa: E402
from slr_core.models.sources import Source  # noqa: E402


def random_pair(
    config_dir: str, settings: Settings, num_layers: int | None, tokenizer_dir: str | None = None
) -> ModelPair:
    """A random pre model and a post model differing from it only inside decoder layers."""
    config = AutoConfig.from_pretrained(config_dir)
    if num_layers:
        config.num_hidden_layers = num_layers
        if hasattr(config, "layer_types") and config.layer_types:
            config.layer_types = config.layer_types[:num_layers]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or config_dir)
    ensure_chat_template(tokenizer, config.model_type)
    torch.manual_seed(0)
    device, dtype = settings.torch_device, settings.torch_dtype
    pre = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()
    post = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()
    post.load_state_dict(pre.state_dict())
    with torch.no_grad():
        for layer in decoder_layers(post):
            for parameter in layer.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter) * parameter.float().std().to(dtype))
    source = Source(config_dir, "folder", config_dir)
    pair = ModelPair(pre, post, tokenizer, source, source, settings)
    pair.label = f"random weights, shape of {config_dir} ({config.num_hidden_layers} layers)"
    return pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--tokenizer", help="tokenizer folder, if not beside the config")
    parser.add_argument("--layers", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--intervals")
    parser.add_argument("--batch-tokens", type=int, default=16384)
    args = parser.parse_args()
    settings = Settings(device=args.device, dtype=args.dtype)
    pair = random_pair(args.config, settings, args.layers, args.tokenizer)
    encoded = encode_prompts(pair.tokenizer, default_prompts())
    if pair.device.type == "cuda":
        print(torch.cuda.get_device_name(pair.device))
    figures = run_benchmark(pair, encoded, args.intervals, args.batch_tokens)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
