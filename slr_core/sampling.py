"""Sampling from a model the way the paper does: min-p, temperature, explicit top-k/top-p off."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .chat import encode_chat


@dataclass(frozen=True)
class SamplingSettings:
    """Decoding settings; every one is passed to generate so generation_config adds nothing."""

    num_samples: int = 8
    min_p: float = 0.1
    temperature: float = 1.0
    max_new_tokens: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.num_samples <= 256:
            raise ValueError(f"num_samples must be 1..256, got {self.num_samples}")
        if not 0.0 <= self.min_p < 1.0:
            raise ValueError(f"min_p must lie in [0, 1), got {self.min_p}")
        if not 0.0 < self.temperature <= 5.0:
            raise ValueError(f"temperature must lie in (0, 5], got {self.temperature}")
        if not 1 <= self.max_new_tokens <= 2048:
            raise ValueError(f"max_new_tokens must be 1..2048, got {self.max_new_tokens}")

    def as_dict(self) -> dict:
        """Plain settings, to store beside results."""
        return asdict(self)


class _StepCallback(LogitsProcessor):
    # Generation calls logits processors once per new token: a free hook for streaming.
    def __init__(self, callback: Callable[[torch.Tensor], None]):
        self.callback = callback

    def __call__(self, input_ids, scores):
        self.callback(input_ids)
        return scores


def _stop_ids(tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    for marker in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>"):
        token_id = tokenizer.convert_tokens_to_ids(marker)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)


@torch.inference_mode()
def sample(
    model,
    tokenizer,
    instruction: str,
    settings: SamplingSettings,
    on_step: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """`num_samples` replies to `instruction`, all in one batched generate call."""
    prompt = encode_chat(tokenizer, instruction)
    device = next(model.parameters()).device
    input_ids = torch.tensor([prompt] * settings.num_samples, device=device)
    prompt_length = input_ids.shape[1]
    stop_ids = _stop_ids(tokenizer)
    processors = LogitsProcessorList()
    if on_step is not None:
        processors.append(
            _StepCallback(lambda ids: on_step(_decode(tokenizer, ids[:, prompt_length:], stop_ids)))
        )
    torch.manual_seed(settings.seed)  # one seed drives the whole batch, so a run reproduces
    output = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        do_sample=True,
        temperature=settings.temperature,
        min_p=settings.min_p or None,
        top_k=0,
        top_p=1.0,
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=stop_ids,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0],
        logits_processor=processors,
        use_cache=True,
    )
    return _decode(tokenizer, output[:, prompt_length:], stop_ids)


def _decode(tokenizer, new_ids: torch.Tensor, stop_ids: list[int]) -> list[str]:
    texts = []
    for row in new_ids.tolist():
        cut = next((k for k, t in enumerate(row) if t in stop_ids), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return texts
