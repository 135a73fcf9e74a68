"""Tiny random model pairs for tests, saved with save_pretrained and loaded like real ones."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from slr_core.crc.prompts import default_prompts
from slr_core.models.chat import GEMMA3_CHAT_TEMPLATE

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]

COMMON = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=2,
)


def tiny_configs(vocab_size: int) -> dict:
    """One small config per supported family; sliding windows shorter than the prompts.

    Every family-specific knob is set away from its neutral value, so a replay that drops it fails.
    """
    from transformers import (
        CohereConfig,
        Gemma2Config,
        Gemma3Config,
        Gemma3TextConfig,
        GPTNeoXConfig,
        GraniteConfig,
        LlamaConfig,
        MistralConfig,
        MixtralConfig,
        Olmo2Config,
        Phi3Config,
        Qwen2Config,
        Qwen3Config,
        SiglipVisionConfig,
        SmolLM3Config,
    )

    base = dict(COMMON, vocab_size=vocab_size)
    window = dict(sliding_window=8)
    # Gemma 3 4B+ is multimodal: a (tiny) SigLIP tower, and image tokens the text tokenizer never emits.
    # Its forward applies no soft-capping even where the text config names one: the replay must follow.
    multimodal_text = dict(
        base,
        vocab_size=vocab_size + 3,
        head_dim=8,
        **window,
        sliding_window_pattern=2,
        final_logit_softcapping=3.0,
    )
    vision = SiglipVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    return {
        "llama": LlamaConfig(**base),
        "mistral": MistralConfig(**base, **window),
        "qwen2": Qwen2Config(**base),
        "qwen3": Qwen3Config(**base, head_dim=8),
        "gemma2": Gemma2Config(**base, head_dim=8, **window, final_logit_softcapping=3.0),
        "gemma3": Gemma3TextConfig(**base, head_dim=8, **window, sliding_window_pattern=2),
        "gemma3_mm": Gemma3Config(
            text_config=Gemma3TextConfig(**multimodal_text),
            vision_config=vision,
            mm_tokens_per_image=4,
            boi_token_index=vocab_size,
            eoi_token_index=vocab_size + 1,
            image_token_id=vocab_size + 2,
        ),
        "phi3": Phi3Config(**base),
        "gpt_neox": GPTNeoXConfig(**base),
        "olmo2": Olmo2Config(**base),
        "granite": GraniteConfig(
            **base,
            embedding_multiplier=3.0,
            residual_multiplier=0.5,
            attention_multiplier=0.3,
            logits_scaling=4.0,
        ),
        "smollm3": SmolLM3Config(**base, no_rope_layer_interval=2),  # layers 1 and 3 use no rotary embedding
        "cohere": CohereConfig(**base, logit_scale=0.25, tie_word_embeddings=True),
        "mixtral": MixtralConfig(**base, **window, num_local_experts=4, num_experts_per_tok=2),
    }


def build_tokenizer(
    folder: Path, vocab_size: int = 300, extra_corpus: tuple[str, ...] = ()
) -> PreTrainedTokenizerFast:
    """A small BPE tokenizer trained on CRC-like text (and `extra_corpus`), with Gemma's chat template."""
    corpus = [p.instruction for s in range(3) for p in default_prompts(seed=s)] + list(extra_corpus)
    corpus += ["user model " + " ".join("0123456789") + " " + " ".join("ABCDEFGHIJKLMNOPQRSTUVWXYZ")]
    corpus += [
        "user\nmodel\n",
        "".join("0123456789"),
        "".join("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        "[0, 5] [A to G]",
    ]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )
    wrapped.chat_template = GEMMA3_CHAT_TEMPLATE
    wrapped.save_pretrained(folder)
    return wrapped


def make_pair(
    root: Path,
    family: str,
    seed: int = 0,
    layer_shift: float = 0.5,
    tokenizer_vocab: int = 300,
    dtype: torch.dtype | None = None,
    config_changes: dict | None = None,
    extra_corpus: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    """Save a random pre model and a post model that differs from it inside decoder layers
    (stored in `dtype` when given, as most released checkpoints are stored in bfloat16)."""
    root = Path(root)
    tokenizer = build_tokenizer(root / "tokenizer", tokenizer_vocab, extra_corpus)
    config = tiny_configs(len(tokenizer))[family]
    for key, value in (config_changes or {}).items():
        setattr(config.get_text_config(), key, value)
    torch.manual_seed(seed)
    pre = AutoModelForCausalLM.from_config(config)
    post = AutoModelForCausalLM.from_config(config)
    post.load_state_dict(pre.state_dict())
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in post.named_parameters():
            if ".layers." in name and "vision_tower" not in name:  # decoder layers only
                noise = torch.randn(parameter.shape, generator=generator) * parameter.std().clamp_min(0.02)
                parameter.add_(layer_shift * noise)
    paths = root / f"{family}-pre", root / f"{family}-post"
    for model, path in zip((pre, post), paths):
        if dtype is not None:
            model.to(dtype)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return paths
