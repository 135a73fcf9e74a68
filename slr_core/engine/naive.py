"""The naive loops the sweep is checked and timed against: each hybrid built, each prompt run alone.

`naive_scores` is the plain reference of the exactness tests (prompt + t re-run for every valid t);
`fair_scores` is what the bench times. Fair means no avoidable work: only the last position goes through the LM head (logits_to_keep=1),
and for the strict columns every valid answer of a prompt is scored as one batched one-token
continuation on top of the prompt's own key/value cache, instead of re-running prompt + t.
"""

from __future__ import annotations

import torch
from torch import nn

from slr_core.crc.prompts import EncodedPrompts, answer_probabilities, first_token_scores, strict_scores
from slr_core.engine.stack import Stats
from slr_core.models.architectures import decoder_layers
from slr_core.models.chat import end_of_turn_ids
from slr_core.models.loading import ModelPair
from slr_core.slr.hybrid import build_hybrid


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


@torch.inference_mode()
def naive_interval_scores(
    pair: ModelPair,
    encoded: EncodedPrompts,
    start: int,
    end: int,
    stats: Stats | None = None,
    mode: str = "layer",
) -> torch.Tensor:
    """The paper-style reference: build the hybrid, run each prompt (and prompt + t) alone."""
    return naive_scores(build_hybrid(pair, start, end, mode), pair.tokenizer, encoded, stats)


@torch.inference_mode()
def naive_scores(
    model: nn.Module, tokenizer, encoded: EncodedPrompts, stats: Stats | None = None
) -> torch.Tensor:
    """Per-prompt (Q, D, stop, strict quality) [P, 4] by plain full forwards, one prompt at a time.

    Only the last position goes through the LM head (logits_to_keep=1).
    """
    end_ids, device = end_of_turn_ids(tokenizer), next(model.parameters()).device
    scores = []
    for p, ids in enumerate(encoded.input_ids):
        prompt = torch.tensor([ids], device=device)
        last = model(input_ids=prompt, use_cache=False, logits_to_keep=1).logits[:, -1].float()
        token_probs = answer_probabilities(last, encoded, [p])
        # Every prompt + t has the same length, so one batch of them is still a plain forward each.
        answers = encoded.token_ids[p].to(device)[:, None]
        with_answer = torch.cat([prompt.expand(len(answers), -1), answers], 1)
        logits = model(input_ids=with_answer, use_cache=False, logits_to_keep=1).logits
        ends = _end_mass(logits[:, -1], end_ids)
        scores.append(
            torch.cat([first_token_scores(token_probs, encoded, [p]), strict_scores(token_probs, [ends])], 1)
        )
        if stats:
            stats.layer_evals += len(decoder_layers(model)) * (1 + len(answers))
            stats.token_layer_evals += len(decoder_layers(model)) * (len(ids) + len(answers) * (len(ids) + 1))
            stats.head_rows += 1 + len(answers)
    return torch.cat(scores)


def _end_probabilities(model: nn.Module, cache, answers: torch.Tensor, end_ids: list[int]) -> torch.Tensor:
    # Each answer t is one continuation row on a copy of the prompt's cache: p(end | prompt, t).
    cache.batch_repeat_interleave(len(answers))
    logits = model(input_ids=answers, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    return _end_mass(logits[:, -1], end_ids)


def _end_mass(logits: torch.Tensor, end_ids: list[int]) -> torch.Tensor:
    # p(end | ...) = the softmax mass on the end-of-turn ids, in float64 (it can be tiny).
    return torch.log_softmax(logits.double(), dim=-1)[:, end_ids].logsumexp(dim=-1).exp().cpu()
