"""The exact, shared-work sweep of CRC scores over every interval [i, j].

For a fixed end j, every start i <= j needs the same post-trained tail j+1..N-1, and for a fixed
start the restored stack i..j grows one pre-trained layer at a time. So the sweep walks j upwards,
keeping one hidden state per live start: each step applies pre-trained layer j to all live starts
at once, then runs the post-trained tail on them, batched. Inputs below layer i come from one
post-trained pass. That is ~N^3/6 layer evaluations instead of the naive loop's ~N^3/2.

Layers are called as the model itself calls them: a hooked forward pass records the keyword
arguments each layer receives (masks, rotary tables, per-layer sliding windows), and the sweep
replays them, so no architecture's forward is rewritten here. Each prompt row also carries its
valid answer tokens as branches (branches.py), so the same pass gives p(end | prompt, answer) for
strict CRC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .architectures import decoder_layers, head_logits
from .branches import Batch, cut_to_width, make_batch, tree_arguments
from .chat import end_of_turn_ids
from .crc import EncodedPrompts, answer_probabilities, first_token_scores, strict_scores
from .errors import UnsupportedArchitectureError
from .hybrid import build_hybrid, check_interval
from .models import ModelPair

__all__ = ["Batch", "make_batch", "model_scores", "naive_interval_scores", "sweep_intervals"]

# A branch whose p(t|x) is below SKIP_BELOW skips the LM head unless, together, the skipped
# branches could move the prompt's strict quality by more than SKIP_RELATIVE of its value.
SKIP_BELOW = 1e-9
SKIP_RELATIVE = 1e-5
HEAD_ROWS = 128  # LM-head rows per matmul: 128 rows x 262k float32 logits is 134 MB


@dataclass
class Stats:
    """Work done: decoder-layer evaluations counted per sequence, and token-layer products."""

    layer_evals: int = 0
    token_layer_evals: int = 0
    head_rows: int = 0  # positions that went through the final norm and LM head
    branches_skipped: int = 0  # answer branches whose head was provably negligible


@dataclass
class Capture:
    """Each decoder layer's input hidden states and call arguments, in the branch (tree) layout."""

    hidden_states: list[torch.Tensor]  # input of layer k for k < N; [N] is the last layer's output
    args: list[tuple]
    kwargs: list[dict]
    num_prompts: int


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _rows(name: str, value, prompt_rows: torch.Tensor, num_prompts: int, width: int):
    # Batch-shaped tensors follow the rows and are cut to the chunk's width; broadcastable ones stay.
    if isinstance(value, torch.Tensor):
        if value.dim() >= 2 and value.shape[0] == num_prompts:
            value = value.index_select(0, prompt_rows.to(value.device))
        return cut_to_width(name, value, width)
    if isinstance(value, tuple | list):
        return type(value)(_rows(name, v, prompt_rows, num_prompts, width) for v in value)
    return value


@torch.inference_mode()
def capture(model: nn.Module, batch: Batch) -> Capture:
    """Record each decoder layer's call, rewrite it for the branch layout, and replay the model."""
    layers = decoder_layers(model)
    inputs, outputs = _record(model, layers, batch)
    for k in range(len(layers) - 1):
        if not torch.equal(outputs[k], inputs[k + 1][0]):
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} changes hidden states between decoder layers {k} and "
                f"{k + 1}; the shared-work sweep cannot replay it."
            )
    memo: dict[tuple[str, int], tuple] = {}  # layers of one kind share one mask: rewrite it once
    kwargs = [tree_arguments(entry[2], batch, memo) for entry in inputs]
    args = [entry[1] for entry in inputs]
    hidden = [inputs[0][0]]
    for k, layer in enumerate(layers):
        hidden.append(_first(layer(hidden[-1], *args[k], **kwargs[k])))
    _check_prompt_unchanged(model, hidden[-1], outputs[-1], batch)
    return Capture(hidden, args, kwargs, len(batch.last_index))


def _record(model: nn.Module, layers: nn.ModuleList, batch: Batch) -> tuple[list, list]:
    inputs: list = [None] * len(layers)
    outputs: list = [None] * len(layers)

    def before(layer_idx):
        def hook(_module, args, kwargs):
            kwargs = dict(kwargs)
            hidden = args[0] if args else kwargs.pop("hidden_states")
            inputs[layer_idx] = (hidden, tuple(args[1:]), kwargs)

        return hook

    def after(layer_idx):
        def hook(_module, _args, _kwargs, output):
            outputs[layer_idx] = _first(output)

        return hook

    handles = [layer.register_forward_pre_hook(before(k), with_kwargs=True) for k, layer in enumerate(layers)]
    handles += [layer.register_forward_hook(after(k), with_kwargs=True) for k, layer in enumerate(layers)]
    try:
        # logits_to_keep=1: the LM head over every position would dominate the pass (262k vocab).
        model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False, logits_to_keep=1
        )
    finally:
        for handle in handles:
            handle.remove()
    return inputs, outputs


def _check_prompt_unchanged(model: nn.Module, tree: torch.Tensor, plain: torch.Tensor, batch: Batch) -> None:
    # Causal attention never looks right, so branches must leave every prompt position as it was.
    positions = torch.arange(batch.num_tokens, device=batch.source.device)
    prompt = (batch.source == positions) & (positions <= batch.last_index[:, None])
    prompt = prompt.to(tree.device)
    if not torch.allclose(tree[prompt], plain.to(tree.device)[prompt], atol=1e-3, rtol=1e-3):
        gap = (tree[prompt] - plain.to(tree.device)[prompt]).abs().max().item()
        raise UnsupportedArchitectureError(
            f"{type(model).__name__}: laying answer tokens out as branches changed the prompt's own "
            f"hidden states (by {gap:.2e}); strict CRC cannot be computed for this model."
        )


def run_layer(layer: nn.Module, layer_idx: int, hidden_states, prompt_rows, cap: Capture):
    """Apply one decoder layer at position `layer_idx` to rows that answer prompts `prompt_rows`."""
    width = hidden_states.shape[1]
    kwargs = {
        name: _rows(name, value, prompt_rows, cap.num_prompts, width)
        for name, value in cap.kwargs[layer_idx].items()
    }
    args = _rows("", cap.args[layer_idx], prompt_rows, cap.num_prompts, width)
    return _first(layer(hidden_states, *args, **kwargs))


def last_logits(model: nn.Module, hidden_states: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
    """Final norm, LM head, logit scaling and soft-capping on each row's last real position: [B, T, d] -> [B, V]."""
    rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
    last = hidden_states[rows, last_index.to(hidden_states.device)]  # [B, d]
    return head_logits(model, last)


def _head(model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """Logits [R, V] of final hidden states [R, d]."""
    return last_logits(model, rows[:, None], torch.zeros(rows.shape[0], dtype=torch.long))


def _kept(hidden_states: torch.Tensor, keep_index: torch.Tensor) -> torch.Tensor:
    """[B, T, d] -> [B, K, d]: each row's last prompt position, then its branches."""
    index = keep_index.to(hidden_states.device)[:, :, None].expand(-1, -1, hidden_states.shape[-1])
    return hidden_states.gather(1, index)


@torch.inference_mode()
def check_tail(model: nn.Module, cap: Capture, batch: Batch) -> None:
    """Fail early if our norm+head disagrees with the model's own logits (e.g. an unknown head)."""
    length = int(batch.last_index[0]) + 1
    ids = batch.input_ids[:1, :length]
    expected = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[0, -1].float()
    ours = last_logits(model, cap.hidden_states[-1][:1], batch.last_index[:1])[0]
    _compare_logits(model, cap, ours, expected, "replaying the final norm and LM head")


@torch.inference_mode()
def check_branches(model: nn.Module, cap: Capture, batch: Batch, count: int = 3) -> None:
    """Fail early if a branch's logits differ from a plain forward of the prompt plus that token."""
    length = int(batch.last_index[0]) + 1
    branches = batch.input_ids[0, length : length + count]
    if branches.numel() == 0:
        return
    ids = torch.cat([batch.input_ids[:1, :length].expand(len(branches), -1), branches[:, None]], dim=1)
    expected = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1].float()
    ours = _head(model, cap.hidden_states[-1][0, length : length + len(branches)])
    _compare_logits(model, cap, ours, expected, "scoring answer tokens as branches")


def _compare_logits(model, cap: Capture, ours: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    expected = expected.to(ours.device)  # across devices, the model returns logits where its input was
    # Half precision rounds the two paths differently; a missing head transform is far larger.
    tolerance = 1e-3 if ours.dtype == torch.float32 and cap.hidden_states[-1].dtype == torch.float32 else 1e-1
    if not torch.allclose(ours, expected, atol=tolerance, rtol=tolerance):
        gap = (ours - expected).abs().max().item()
        raise UnsupportedArchitectureError(
            f"{type(model).__name__}: {what} differs from the model's own logits by {gap:.2e}; "
            "this architecture is not supported by the sweep."
        )


def score_kept(
    model: nn.Module, kept: torch.Tensor, encoded: EncodedPrompts, end_ids: list[int], stats: Stats
) -> torch.Tensor:
    """Per-prompt (Q, D, stop, strict quality) [P, 4] from kept final states [P, 1 + K, d]."""
    rows = list(range(kept.shape[0]))
    token_probs = answer_probabilities(_head(model, kept[:, 0]), encoded, rows)
    stats.head_rows += len(rows)
    ends = [torch.zeros_like(probs) for probs in token_probs]
    done = [probs >= SKIP_BELOW for probs in token_probs]
    _end_probabilities(model, kept, done, ends, end_ids, stats)
    # Second look: wherever the skipped mass could matter, score the rest of that prompt's branches.
    again = [torch.zeros_like(d) for d in done]
    for b, (probs, finished) in enumerate(zip(token_probs, done)):
        lower_bound = (probs[finished] * ends[b][finished]).sum()
        if probs[~finished].sum() > SKIP_RELATIVE * lower_bound:
            again[b] = ~finished
    _end_probabilities(model, kept, again, ends, end_ids, stats)
    stats.branches_skipped += sum(int((~(d | a)).sum()) for d, a in zip(done, again))
    return torch.cat([first_token_scores(token_probs, encoded, rows), strict_scores(token_probs, ends)], 1)


def _end_probabilities(model, kept, wanted: list[torch.Tensor], ends: list[torch.Tensor], end_ids, stats):
    # P_end(x, t) = sum over e in E of softmax(logits at branch t)[e], head rows in chunks.
    pairs = [(b, m) for b, mask in enumerate(wanted) for m in mask.nonzero().flatten().tolist()]
    end_index = torch.tensor(end_ids, device=kept.device)
    for lo in range(0, len(pairs), HEAD_ROWS):
        chunk = pairs[lo : lo + HEAD_ROWS]
        b_idx = torch.tensor([b for b, _ in chunk], device=kept.device)
        m_idx = torch.tensor([m for _, m in chunk], device=kept.device)
        logits = _head(model, kept[b_idx, 1 + m_idx])
        log_end = torch.logsumexp(logits[:, end_index], dim=-1) - torch.logsumexp(logits, dim=-1)
        for (b, m), value in zip(chunk, log_end.double().exp().cpu()):
            ends[b][m] = value
        stats.head_rows += len(chunk)


@torch.inference_mode()
def model_scores(model: nn.Module, encoded: EncodedPrompts, batch: Batch, end_ids: list[int], stats=None):
    """Per-prompt CRC scores [P, 4] of a whole model in one batched pass."""
    stats = stats or Stats()
    cap = capture(model, batch)
    stats.layer_evals += len(cap.args) * cap.num_prompts
    stats.token_layer_evals += len(cap.args) * int(batch.widths.sum())
    return score_kept(model, _kept(cap.hidden_states[-1], batch.keep_index), encoded, end_ids, stats)


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
) -> Iterator[IntervalScores]:
    """Yield exact per-prompt scores for each interval in `wanted`, column by column."""
    num_layers, stats = pair.num_layers, stats or Stats()
    for start, end in wanted:
        check_interval(start, end, num_layers)
    batch = make_batch(encoded, pair.tokenizer.pad_token_id, pair.device)
    end_ids = end_of_turn_ids(pair.tokenizer)
    pre_layers, post_layers = list(decoder_layers(pair.pre)), list(decoder_layers(pair.post))
    cap = capture(pair.post, batch)
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
            out[rows.to(out.device)] = _kept(
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
    pair: ModelPair, encoded: EncodedPrompts, start: int, end: int, stats: Stats | None = None
) -> torch.Tensor:
    """The paper-style reference: build the hybrid, run each prompt (and prompt + t) alone."""
    return naive_scores(build_hybrid(pair, start, end), pair.tokenizer, encoded, stats)


@torch.inference_mode()
def naive_scores(
    model: nn.Module, tokenizer, encoded: EncodedPrompts, stats: Stats | None = None
) -> torch.Tensor:
    """Per-prompt (Q, D, stop, strict quality) [P, 4] by plain full forwards, one prompt at a time."""
    end_ids, device = end_of_turn_ids(tokenizer), next(model.parameters()).device
    scores = []
    for p, ids in enumerate(encoded.input_ids):
        prompt = torch.tensor([ids], device=device)
        token_probs = answer_probabilities(
            model(input_ids=prompt, use_cache=False).logits[:, -1].float(), encoded, [p]
        )
        # Every prompt + t has the same length, so one batch of them is still a plain forward each.
        answers = encoded.token_ids[p].to(device)[:, None]
        logits = model(
            input_ids=torch.cat([prompt.expand(len(answers), -1), answers], 1), use_cache=False
        ).logits
        log_probs = torch.log_softmax(logits[:, -1].double(), dim=-1)
        ends = log_probs[:, end_ids].logsumexp(dim=-1).exp().cpu()
        scores.append(
            torch.cat([first_token_scores(token_probs, encoded, [p]), strict_scores(token_probs, [ends])], 1)
        )
        if stats:
            stats.layer_evals += len(decoder_layers(model)) * (1 + len(answers))
            stats.token_layer_evals += len(decoder_layers(model)) * (len(ids) + len(answers) * (len(ids) + 1))
            stats.head_rows += len(ids) + len(answers) * (len(ids) + 1)  # logits at every position
    return torch.cat(scores)
