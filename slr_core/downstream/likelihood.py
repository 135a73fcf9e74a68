"""Likelihood of sampled replies under a scoring model: mean log-probability per token."""

from __future__ import annotations

import math

import torch

from slr_core.models.chat import encode_chat

LOGIT_BUDGET = 2**27  # logit floats per forward pass (512 MiB in float32), bounds scoring memory


@torch.inference_mode()
def token_logliks(model, tokenizer, instruction: str, samples: list[str]) -> list[float]:
    """Mean per-token log-likelihood of each sample after the chat prompt; NaN for empty samples."""
    prompt = encode_chat(tokenizer, instruction)
    rows = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in samples]
    out = [math.nan] * len(rows)
    filled = [k for k, row in enumerate(rows) if row]
    if not filled:
        return out
    longest = max(len(rows[k]) for k in filled)
    vocab = model.get_output_embeddings().weight.shape[0]
    chunk = max(1, LOGIT_BUDGET // ((longest + 1) * vocab))
    for start in range(0, len(filled), chunk):
        part = filled[start : start + chunk]
        for k, value in zip(
            part, _score_batch(model, tokenizer, prompt, [rows[k] for k in part], longest), strict=True
        ):
            out[k] = value
    return out


def _score_batch(model, tokenizer, prompt: list[int], rows: list[list[int]], longest: int) -> list[float]:
    # Same prompt for every row and right padding: response token t sits at len(prompt) + t in all
    # rows, so keeping the last longest + 1 logits covers every response token of the batch.
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    ids = torch.tensor([prompt + row + [pad] * (longest - len(row)) for row in rows], device=device)
    mask = torch.tensor(
        [[1] * (len(prompt) + len(row)) + [0] * (longest - len(row)) for row in rows], device=device
    )
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=longest + 1).logits[:, :-1].float()
    targets = ids[:, len(prompt) :]
    picked = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    valid = mask[:, len(prompt) :].to(picked.dtype)
    return ((picked * valid).sum(1) / valid.sum(1)).tolist()
