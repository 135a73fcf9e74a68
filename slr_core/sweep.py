"""The exact, shared-work sweep of CRC scores over every interval [i, j].

For a fixed end j, every start i <= j needs the same post-trained tail j+1..N-1, and for a fixed
start the restored stack i..j grows one pre-trained layer at a time. So the sweep walks j upwards,
keeping one hidden state per live start: each step applies pre-trained layer j to all live starts
at once, then runs the post-trained tail on them, batched. Inputs below layer i come from one
post-trained pass. That is ~N^3/6 layer evaluations instead of the naive loop's ~N^3/2.

Layers are called as the model itself calls them, with the arguments capture.py recorded, so no
architecture's forward is rewritten here. Each prompt row also carries its valid answer tokens as
branches (branches.py), so the same pass gives p(end | prompt, answer) for strict CRC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .architectures import decoder_layers
from .branches import Batch, make_batch
from .capture import (
    Reference,
    capture,
    check_branches,
    check_tail,
    final_logits,
    kept_positions,
    replay,
    run_layer,
)
from .chat import end_of_turn_ids
from .crc import EncodedPrompts, answer_probabilities, first_token_scores, strict_scores
from .hybrid import build_hybrid, check_interval, check_mode, restoring_layer
from .models import ModelPair

__all__ = ["Batch", "make_batch", "model_scores", "naive_interval_scores", "sweep_intervals"]

# The LM head over a branch (a full-vocabulary softmax) is most of the strict-CRC cost, so branches
# are scored from likely to unlikely, tier by tier (p(t|x) >= each of SKIP_TIERS in turn), and a
# prompt stops once its unscored answer mass is at most SKIP_RELATIVE of the strict quality found
# so far: as P_end <= 1, the skipped branches then change strict quality by at most that fraction.
SKIP_TIERS = (1e-4, 1e-8, 0.0)
SKIP_RELATIVE = 1e-5
HEAD_ROWS = 256  # LM-head rows per matmul: 256 rows x 262k float32 logits is 268 MB


@dataclass
class Stats:
    """Work done: decoder-layer evaluations counted per sequence, and token-layer products."""

    layer_evals: int = 0
    token_layer_evals: int = 0
    head_rows: int = 0  # positions that went through the final norm and LM head
    branches_skipped: int = 0  # answer branches whose head was provably negligible


def score_kept(
    model: nn.Module, kept: torch.Tensor, encoded: EncodedPrompts, end_ids: list[int], stats: Stats
) -> torch.Tensor:
    """Per-prompt (Q, D, stop, strict quality) [P, 4] from kept final states [P, 1 + K, d]."""
    rows = list(range(kept.shape[0]))
    token_probs = answer_probabilities(final_logits(model, kept[:, 0]), encoded, rows)
    stats.head_rows += len(rows)
    ends = [torch.zeros_like(probs) for probs in token_probs]
    done = [torch.zeros_like(probs, dtype=torch.bool) for probs in token_probs]
    for tier in SKIP_TIERS:
        wanted = [
            torch.zeros_like(finished) if _settled(probs, ends[b], finished) else (probs >= tier) & ~finished
            for b, (probs, finished) in enumerate(zip(token_probs, done))
        ]
        _end_probabilities(model, kept, wanted, ends, end_ids, stats)
        done = [finished | more for finished, more in zip(done, wanted)]
    stats.branches_skipped += sum(int((~finished).sum()) for finished in done)
    return torch.cat([first_token_scores(token_probs, encoded, rows), strict_scores(token_probs, ends)], 1)


def _settled(probs: torch.Tensor, ends: torch.Tensor, finished: torch.Tensor) -> bool:
    # Unscored branches add at most their answer mass; settled once that is negligible.
    if not finished.any():
        return False
    lower_bound = (probs[finished] * ends[finished]).sum()
    return bool(probs[~finished].sum() <= SKIP_RELATIVE * lower_bound)


def _end_probabilities(model, kept, wanted: list[torch.Tensor], ends: list[torch.Tensor], end_ids, stats):
    # P_end(x, t) = sum over e in E of softmax(logits at branch t)[e], head rows in chunks.
    pairs = [(b, m) for b, mask in enumerate(wanted) for m in mask.nonzero().flatten().tolist()]
    end_index = torch.tensor(end_ids, device=kept.device)
    for lo in range(0, len(pairs), HEAD_ROWS):
        chunk = pairs[lo : lo + HEAD_ROWS]
        b_idx = torch.tensor([b for b, _ in chunk], device=kept.device)
        m_idx = torch.tensor([m for _, m in chunk], device=kept.device)
        logits = final_logits(model, kept[b_idx, 1 + m_idx])
        log_end = torch.logsumexp(logits[:, end_index], dim=-1) - torch.logsumexp(logits, dim=-1)
        for (b, m), value in zip(chunk, log_end.double().exp().cpu()):
            ends[b][m] = value
        stats.head_rows += len(chunk)


@torch.inference_mode()
def model_scores(
    model: nn.Module,
    encoded: EncodedPrompts,
    batch: Batch,
    end_ids: list[int],
    stats=None,
    reference: Reference | None = None,
):
    """Per-prompt CRC scores [P, 4] of a whole model in one batched pass.

    With a `reference`, a model of its architecture replays the reference's recorded layer calls
    instead of recording its own: one pass through the layers instead of two.
    """
    stats = stats or Stats()
    if reference is not None and model is reference.model:
        cap = reference.capture()
    else:
        cap = replay(model, batch, reference.capture()) if reference is not None else None
        cap = cap or capture(model, batch)
    stats.layer_evals += len(cap.args) * cap.num_prompts
    stats.token_layer_evals += len(cap.args) * int(batch.widths.sum())
    return score_kept(model, kept_positions(cap.hidden_states[-1], batch.keep_index), encoded, end_ids, stats)


@dataclass
class IntervalScores:
    """Per-prompt CRC scores [P, 4] (Q, D, stop, strict quality) of the hybrid [start, end]."""

    start: int
    end: int
    per_prompt: torch.Tensor = field(repr=False)


@torch.inference_mode()
def sweep_intervals(
    pair: ModelPair,
    encoded: EncodedPrompts,
    wanted: set[tuple[int, int]],
    batch_tokens: int = 16384,
    stats: Stats | None = None,
    mode: str = "layer",
    reference: Reference | None = None,
) -> Iterator[IntervalScores]:
    """Yield exact per-prompt scores for each interval in `wanted`, column by column.

    `mode` says what comes back in each restored layer (hybrid.RESTORE_MODES); the stack grown for a
    start is then made of those mixed layers (post-trained layer, pre-trained attention or MLP).
    """
    num_layers, stats = pair.num_layers, stats or Stats()
    check_mode(mode)
    for start, end in wanted:
        check_interval(start, end, num_layers)
    # The post model's capture is the same for every interval: reuse the caller's if it has one.
    reference = reference or Reference(
        pair.post, make_batch(encoded, pair.tokenizer.pad_token_id, pair.device)
    )
    batch = reference.batch
    end_ids = end_of_turn_ids(pair.tokenizer)
    post_layers = list(decoder_layers(pair.post))
    pre_layers = [
        restoring_layer(post, pre, mode) for post, pre in zip(post_layers, decoder_layers(pair.pre))
    ]
    cap = reference.capture()
    check_tail(pair.post, cap, batch)
    check_branches(pair.post, cap, batch)
    last_needed = {}
    for start, end in wanted:
        last_needed[start] = max(end, last_needed.get(start, -1))
    active: dict[int, torch.Tensor] = {}  # start -> hidden states after pre layers start..j-1
    progress = tqdm(total=len(wanted), desc="CRC sweep", unit="interval", leave=False)
    for end in range(num_layers):
        if end in last_needed:
            active[end] = cap.hidden_states[end]
        if not active:
            continue
        starts = sorted(active)
        states = [active[i] for i in starts]
        active = dict(
            zip(starts, _apply(pre_layers[end : end + 1], end, states, cap, batch, batch_tokens, stats))
        )
        column = [i for i in starts if (i, end) in wanted]
        if column:
            tail, states = post_layers[end + 1 :], [active[i] for i in column]
            finals = _apply(tail, end + 1, states, cap, batch, batch_tokens, stats, keep=True)
            for start, kept in zip(column, finals):
                progress.update(1)
                yield IntervalScores(start, end, score_kept(pair.post, kept, encoded, end_ids, stats))
        active = {i: h for i, h in active.items() if last_needed[i] > end}
    progress.close()


def _apply(layers, first_idx, states, cap, batch: Batch, batch_tokens: int, stats, keep: bool = False):
    """Run `layers` (at positions first_idx...) over a list of [P, W, d] states, one per start.

    Rows go through in chunks of about `batch_tokens` tokens, ordered by width so that each chunk
    is cut to its widest row. With keep, return each row's kept positions, shaped [P, 1 + K, d].
    """
    num_starts, num_prompts = len(states), cap.num_prompts
    # Layers on several devices leave their outputs where they ran: gather on the first state's device.
    flat = torch.stack([s.to(states[0].device) for s in states], dim=1).flatten(0, 1)  # row = p * S + s
    out_shape = (flat.shape[0], batch.num_kept if keep else batch.num_tokens, flat.shape[-1])
    out = torch.zeros(out_shape, dtype=flat.dtype, device=flat.device)
    for rows, width in _chunks(batch, num_starts, batch_tokens):
        hidden, prompt_rows = flat.index_select(0, rows.to(flat.device))[:, :width], rows // num_starts
        for offset, layer in enumerate(layers):
            hidden = run_layer(layer, first_idx + offset, hidden, prompt_rows, cap)
            stats.layer_evals += hidden.shape[0]
            stats.token_layer_evals += int(
                batch.widths.index_select(0, prompt_rows.to(batch.widths.device)).sum()
            )
        if keep:
            out[rows.to(out.device)] = kept_positions(
                hidden, batch.keep_index.index_select(0, prompt_rows.to(batch.keep_index.device))
            )
        else:
            out[rows.to(out.device), :width] = hidden
    return list(out.view(num_prompts, num_starts, *out.shape[1:]).unbind(1))


def _chunks(batch: Batch, num_starts: int, batch_tokens: int) -> Iterator[tuple[torch.Tensor, int]]:
    # Rows of the same prompt (one per start) are neighbours; prompts go from narrow to wide.
    widths = batch.widths.cpu()
    rows, width = [], 0
    for prompt in torch.argsort(widths, stable=True).tolist():
        for start in range(num_starts):
            grown = max(width, int(widths[prompt]))
            if rows and (len(rows) + 1) * grown > batch_tokens:
                yield torch.tensor(rows), width
                rows, grown = [], int(widths[prompt])
            rows.append(prompt * num_starts + start)
            width = grown
    if rows:
        yield torch.tensor(rows), width


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

    Fair to the sweep: only the last position goes through the LM head (logits_to_keep=1).
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
        log_probs = torch.log_softmax(logits[:, -1].double(), dim=-1)
        ends = log_probs[:, end_ids].logsumexp(dim=-1).exp().cpu()
        scores.append(
            torch.cat([first_token_scores(token_probs, encoded, [p]), strict_scores(token_probs, [ends])], 1)
        )
        if stats:
            stats.layer_evals += len(decoder_layers(model)) * (1 + len(answers))
            stats.token_layer_evals += len(decoder_layers(model)) * (len(ids) + len(answers) * (len(ids) + 1))
            stats.head_rows += 1 + len(answers)
    return torch.cat(scores)
