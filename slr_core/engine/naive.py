"""The naive loops the sweep is checked and timed against: each hybrid built, each prompt run alone.

`naive_scores` is the plain reference of the exactness tests (prompt + s re-run for every sequence s
that says an answer, found by decoding whole sequences);
`fair_scores` is what the bench times. Fair means no avoidable work: only the last position goes through the LM head (logits_to_keep=1),
and for the strict columns every valid answer of a prompt is scored as one batched one-token
continuation on top of the prompt's own key/value cache, instead of re-running prompt + t.
"""

from __future__ import annotations

import torch
from torch import nn

from slr_core.crc.prompts import EncodedPrompts, answer_probabilities, first_token_scores, strict_scores
from slr_core.crc.trie_scores import entropy
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
    """Per-prompt (Q, D, stop, strict quality) [P, 4], one prompt at a time; (Q, D) [P, 2] without strict.

    Single-token answer sets only (the paper's set): what the bench times against the sweep.
    """
    if not encoded.is_flat:
        raise ValueError("fair_scores times single-token answer sets only; use naive_scores for others")
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
    """Per-prompt (Q, D, stop, strict quality, answer_diversity) [P, 5] straight from the definitions.

    Every sequence that says an answer is found by `answer_sequences` (whole-sequence decoding, not
    the trie builder), and prompt + sequence is run as one plain forward each.
    """
    end_ids, device = end_of_turn_ids(tokenizer), next(model.parameters()).device
    num_layers, scores = len(decoder_layers(model)), []
    for p, ids in enumerate(encoded.input_ids):
        answers = encoded.prompts[p].valid
        sequences = answer_sequences(tokenizer, answers)
        said = {tuple(s) for s, _ in sequences}
        # Replies that begin with a complete answer: sequences with no shorter complete prefix.
        first = [not any(tuple(s[:k]) in said for k in range(1, len(s))) for s, _ in sequences]
        prob, end = (
            torch.zeros(len(sequences), dtype=torch.float64),
            torch.zeros(len(sequences), dtype=torch.float64),
        )
        for k, (sequence, _) in enumerate(sequences):
            row = torch.tensor([ids + sequence], device=device)
            logits = model(input_ids=row, use_cache=False, logits_to_keep=len(sequence) + 1).logits[0]
            log_probs = torch.log_softmax(logits.double(), dim=-1)  # [len(s) + 1, V]
            prob[k] = log_probs[torch.arange(len(sequence)), torch.tensor(sequence)].sum().exp()
            end[k] = log_probs[-1, end_ids].logsumexp(dim=-1).exp()
            if stats is not None:
                stats.layer_evals += num_layers
                stats.token_layer_evals += num_layers * row.shape[1]
                stats.head_rows += len(sequence) + 1
        slot = torch.tensor([a for _, a in sequences], dtype=torch.long)
        mask = torch.tensor(first, dtype=torch.bool)
        per_answer = torch.zeros(len(answers), dtype=torch.float64).index_add_(0, slot[mask], prob[mask])
        per_answer_strict = torch.zeros(len(answers), dtype=torch.float64).index_add_(0, slot, prob * end)
        quality, strict = per_answer.sum(), per_answer_strict.sum()
        stop = strict / quality if quality > 0 else torch.zeros((), dtype=torch.float64)
        answer_diversity = entropy(per_answer_strict) if strict > 0 else torch.zeros((), dtype=torch.float64)
        scores.append(torch.stack([quality, entropy(per_answer), stop, strict, answer_diversity]))
    return torch.stack(scores)


# The naive enumeration grows with (tokens per character) ** (answer length): short answers only.
NAIVE_SEQUENCES = 20000


def answer_sequences(tokenizer, answers: tuple[str, ...]) -> list[tuple[list[int], int]]:
    """(sequence, answer index) for every token sequence s with decode(s).strip() an answer and no
    token decoding to whitespace only, found by decoding whole candidate sequences (the definition)."""
    special = set(tokenizer.all_special_ids)
    texts = tokenizer.batch_decode([[t] for t in range(len(tokenizer))], clean_up_tokenization_spaces=False)
    # A token of such a sequence decodes alone to a part of an answer (up to surrounding whitespace).
    candidates = [
        t
        for t, text in enumerate(texts)
        if t not in special and text.strip() and any(text.strip() in a for a in answers)
    ]
    found, stack = [], [[]]
    while stack:
        sequence = stack.pop()
        for token in candidates:
            grown = sequence + [token]
            text = tokenizer.decode(grown, clean_up_tokenization_spaces=False).strip()
            if text in answers:
                found.append((grown, answers.index(text)))
            if any(a.startswith(text) and len(a) > len(text) for a in answers):
                stack.append(grown)
            if len(found) + len(stack) > NAIVE_SEQUENCES:
                raise ValueError(f"naive reference: over {NAIVE_SEQUENCES} sequences; use shorter answers")
    return sorted(found)


def _end_probabilities(model: nn.Module, cache, answers: torch.Tensor, end_ids: list[int]) -> torch.Tensor:
    # Each answer t is one continuation row on a copy of the prompt's cache: p(end | prompt, t).
    cache.batch_repeat_interleave(len(answers))
    logits = model(input_ids=answers, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    return _end_mass(logits[:, -1], end_ids)


def _end_mass(logits: torch.Tensor, end_ids: list[int]) -> torch.Tensor:
    # p(end | ...) = the softmax mass on the end-of-turn ids, in float64 (it can be tiny).
    return torch.log_softmax(logits.double(), dim=-1)[:, end_ids].logsumexp(dim=-1).exp().cpu()
