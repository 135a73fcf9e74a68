"""Write the benchmark pair: random-weight 12-layer Llama-shaped pre and post models, offline.

Shape: 12 layers, hidden 512, intermediate 1536, 8 heads (4 key/value heads), vocabulary 49152
(SmolLM2's), fp32. The tokenizer is a byte-level BPE trained here on the project's own text, with
SmolLM2's ChatML template, which inserts a default system prompt when none is given, so every
CRC prompt starts with the same ~30 tokens. Usage:
    python scripts/make_bench_pair.py OUT_DIR   # writes OUT_DIR/pre and OUT_DIR/post
then `python -m slr_core bench --pre OUT_DIR/pre --post OUT_DIR/post --dtype float32`.
"""

from __future__ import annotations

import argparse
import string
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from slr_core.crc.prompts import default_prompts  # noqa: E402

# SmolLM2-Instruct's template, verbatim in behaviour: a default system prompt when none is given.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 49152
TOKENIZER_VOCAB = 2000  # trained on little text: the model's vocabulary is larger, as SmolLM2 allows


def build_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the project's README and CRC prompts, every byte a token."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    corpus = readme.splitlines() + [p.instruction for s in range(3) for p in default_prompts(seed=s)]
    corpus += [string.digits, string.ascii_letters]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    wrapped.chat_template = SMOLLM2_TEMPLATE
    wrapped.save_pretrained(folder)
    return wrapped


def bench_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """The 12-layer Llama shape (hidden 512, 49152-token vocabulary)."""
    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=12,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def make_pair(out: Path, seed: int = 0) -> tuple[Path, Path]:
    """Save pre (random) and post (pre + a small perturbation of every decoder-layer tensor)."""
    tokenizer = build_tokenizer(out / "tokenizer")
    config = bench_config(tokenizer)
    torch.manual_seed(seed)
    pre = LlamaForCausalLM(config).eval()
    post = LlamaForCausalLM(config).eval()
    post.load_state_dict(pre.state_dict())
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in post.named_parameters():
            if ".layers." in name:  # the pair differs only inside decoder layers, as SLR assumes
                noise = torch.randn(parameter.shape, generator=generator) * parameter.std().clamp_min(0.02)
                parameter.add_(0.1 * noise)
    paths = out / "pre", out / "post"
    for model, path in zip((pre, post), paths):
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="folder to write pre/ and post/ into")
    args = parser.parse_args()
    pre, post = make_pair(args.out)
    print(f"wrote {pre} and {post}")


if __name__ == "__main__":
    main()
