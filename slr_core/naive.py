"""The fair naive loop the sweep is timed against: each hybrid built, each prompt run alone.

Fair means no avoidable work: only the last position goes through the LM head (logits_to_keep=1),
and for the strict columns every valid answer of a prompt is scored as one batched one-token
continuation on top of the prompt's own key/value cache, instead of re-running prompt + t.
"""

from __future__ import annotations

import torch
from torch import nn

from .architectures import decoder_layers
from .chat import end_of_turn_ids
from .crc import EncodedPrompts, answer_probabilities, first_token_scores, strict_scores
from .hybrid import build_hybrid
from .models import ModelPair
from .stack import Stats


@torch.inference_mode()
def fair_interval_scores(
    pair: ModelPair,
    encoded: EncodedPrompts,
    start: int,
    end: int,
    stats: Stats | None = None,
    mode: str = "layer",
    strict: bool = True,
) -> torch.Tensor:
    """Build the hybrid [start, end] and score it with `fair_scores`."""
    return fair_scores(build_hybrid(pair, start, end, mode), pair.tokenizer, encoded, stats, strict)


@torch.inference_mode()
def fair_scores(
    model: nn.Module, tokenizer, encoded: EncodedPrompts, stats: Stats | None = None, strict: bool = True
) -> torch.Tensor:
    """Per-prompt (Q, D, stop, strict quality) [P, 4], one prompt at a time; (Q, D) [P, 2] without strict."""
    end_ids, device = end_of_turn_ids(tokenizer), next(model.parameters()).device
    num_layers, scores = len(decoder_layers(model)), []
    for p, ids in enumerate(encoded.input_ids):
        prompt = torch.tensor([ids], device=device)
        output = model(input_ids=prompt, use_cache=strict, logits_to_keep=1)
        token_probs = answer_probabilities(output.logits[:, -1].float(), encoded, [p])
        row = first_token_scores(token_probs, encoded, [p])
        answers = encoded.token_ids[p].to(device)[:, None]
        if strict:
            ends = _end_probabilities(model, output.past_key_values, answers, end_ids)
            row = torch.cat([row, strict_scores(token_probs, [ends])], 1)
        scores.append(row)
        if stats is not None:
            extra = len(answers) if strict else 0
            stats.layer_evals += num_layers * (1 + extra)
            stats.token_layer_evals += num_layers * (len(ids) + extra)
            stats.head_rows += 1 + extra
    return torch.cat(scores)


def _end_probabilities(model: nn.Module, cache, answers: torch.Tensor, end_ids: list[int]) -> torch.Tensor:
    # Each answer t is one continuation row on a copy of the prompt's cache: p(end | prompt, t).
    cache.batch_repeat_interleave(len(answers))
    logits = model(input_ids=answers, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    log_probs = torch.log_softmax(logits[:, -1].double(), dim=-1)
    return log_probs[:, end_ids].logsumexp(dim=-1).exp().cpu()
