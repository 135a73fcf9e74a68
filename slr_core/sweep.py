"""The exact, shared-work sweep of CRC scores over every interval [i, j].

For a fixed end j, every start i <= j needs the same post-trained tail j+1..N-1, and for a fixed
start the restored stack i..j grows one pre-trained layer at a time. So the sweep walks j upwards,
keeping one hidden state per live start: each step applies pre-trained layer j to all live starts
at once, then runs the post-trained tail on them, batched. Inputs below layer i come from one
post-trained pass. That is ~N^3/6 layer evaluations instead of the naive loop's ~N^3/2.

Layers are called as the model itself calls them: a hooked forward pass records the keyword
arguments each layer receives (masks, rotary tables, per-layer sliding windows), and the sweep
replays them, so no architecture's forward is rewritten here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .crc import EncodedPrompts, score_logits
from .errors import UnsupportedArchitectureError
from .hybrid import build_hybrid, check_interval
from .models import ModelPair, decoder_layers, final_norm


@dataclass
class Batch:
    """A right-padded prompt batch; right padding keeps every query row attending to something."""

    input_ids: torch.Tensor  # [P, T]
    attention_mask: torch.Tensor  # [P, T]
    last_index: torch.Tensor  # [P] position of each prompt's last real token

    @property
    def num_tokens(self) -> int:
        return self.input_ids.shape[1]


def make_batch(encoded: EncodedPrompts, pad_token_id: int | None, device: torch.device) -> Batch:
    """Stack the prompts' ids, padded on the right."""
    lengths = [len(ids) for ids in encoded.input_ids]
    width, pad = max(lengths), pad_token_id if pad_token_id is not None else 0
    input_ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, ids in enumerate(encoded.input_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    last_index = torch.tensor(lengths) - 1
    return Batch(input_ids.to(device), attention_mask.to(device), last_index.to(device))


@dataclass
class Stats:
    """Work done: decoder-layer evaluations counted per sequence, and token-layer products."""

    layer_evals: int = 0
    token_layer_evals: int = 0
    head_rows: int = 0  # positions that went through the final norm and LM head


@dataclass
class Capture:
    """What one hooked forward pass recorded for every decoder layer."""

    hidden_states: list[torch.Tensor]  # input of layer k for k < N; [N] is the last layer's output
    args: list[tuple]
    kwargs: list[dict]
    num_prompts: int


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _rows(value, prompt_rows: torch.Tensor, num_prompts: int):
    # Batch-shaped tensors follow the rows; broadcastable ones (batch dim 1, or 1-D) stay as they are.
    if isinstance(value, torch.Tensor):
        if value.dim() >= 2 and value.shape[0] == num_prompts:
            return value.index_select(0, prompt_rows.to(value.device))
        return value
    if isinstance(value, tuple | list):
        return type(value)(_rows(v, prompt_rows, num_prompts) for v in value)
    if isinstance(value, dict):
        return {k: _rows(v, prompt_rows, num_prompts) for k, v in value.items()}
    return value


@torch.inference_mode()
def capture(model: nn.Module, batch: Batch) -> Capture:
    """Run `model` once, recording each decoder layer's input and call arguments."""
    layers = decoder_layers(model)
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
    for k in range(len(layers) - 1):
        if not torch.equal(outputs[k], inputs[k + 1][0]):
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} changes hidden states between decoder layers {k} and "
                f"{k + 1}; the shared-work sweep cannot replay it."
            )
    hidden = [entry[0] for entry in inputs] + [outputs[-1]]
    return Capture(hidden, [e[1] for e in inputs], [e[2] for e in inputs], len(batch.last_index))


def run_layer(layer: nn.Module, layer_idx: int, hidden_states, prompt_rows, cap: Capture):
    """Apply one decoder layer at position `layer_idx` to rows that answer prompts `prompt_rows`."""
    kwargs = _rows(cap.kwargs[layer_idx], prompt_rows, cap.num_prompts)
    args = _rows(cap.args[layer_idx], prompt_rows, cap.num_prompts)
    return _first(layer(hidden_states, *args, **kwargs))


def last_logits(model: nn.Module, hidden_states: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
    """Final norm and LM head on each row's last real position only: [B, T, d] -> [B, V]."""
    rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
    last = hidden_states[rows, last_index.to(hidden_states.device)]  # [B, d]
    logits = model.get_output_embeddings()(final_norm(model)(last)).float()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


@torch.inference_mode()
def check_tail(model: nn.Module, cap: Capture, batch: Batch) -> None:
    """Fail early if our norm+head disagrees with the model's own logits (e.g. an unknown head)."""
    length = int(batch.last_index[0]) + 1
    ids = batch.input_ids[:1, :length]
    expected = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[0, -1].float()
    ours = last_logits(model, cap.hidden_states[-1][:1], batch.last_index[:1])[0]
    expected = expected.to(ours.device)  # across devices, the model returns logits where its input was
    # Half precision rounds the two paths differently; a missing head transform is far larger.
    tolerance = 1e-3 if ours.dtype == torch.float32 and cap.hidden_states[-1].dtype == torch.float32 else 1e-1
    if not torch.allclose(ours, expected, atol=tolerance, rtol=tolerance):
        gap = (ours - expected).abs().max().item()
        raise UnsupportedArchitectureError(
            f"{type(model).__name__}: replaying the final norm and LM head differs from the "
            f"model's own logits by {gap:.2e}; this architecture is not supported by the sweep."
        )


@torch.inference_mode()
def model_scores(model: nn.Module, encoded: EncodedPrompts, batch: Batch, stats: Stats | None = None):
    """Per-prompt CRC scores [P, 2] of a whole model in one batched pass."""
    cap = capture(model, batch)
    if stats:
        stats.layer_evals += len(cap.args) * cap.num_prompts
        stats.token_layer_evals += len(cap.args) * batch.input_ids.numel()
        stats.head_rows += cap.num_prompts
    logits = last_logits(model, cap.hidden_states[-1], batch.last_index)
    return score_logits(logits, encoded, list(range(len(encoded))))


@dataclass
class IntervalScores:
    """Per-prompt CRC scores [P, 2] of the hybrid [start, end]."""

    start: int
    end: int
    per_prompt: torch.Tensor = field(repr=False)


def rows_per_chunk(batch: Batch, batch_tokens: int) -> int:
    """How many sequences fit the memory knob (tokens per layer call)."""
    return max(1, batch_tokens // batch.num_tokens)


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
    pre_layers, post_layers = list(decoder_layers(pair.pre)), list(decoder_layers(pair.post))
    cap = capture(pair.post, batch)
    check_tail(pair.post, cap, batch)
    num_prompts, chunk = len(encoded), rows_per_chunk(batch, batch_tokens)
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
        extended = _apply(pre_layers[end : end + 1], end, [active[i] for i in starts], cap, chunk, stats)
        active = dict(zip(starts, extended))
        column = [i for i in starts if (i, end) in wanted]
        if column:
            tail = post_layers[end + 1 :]
            states = [active[i] for i in column]
            finals = _apply(tail, end + 1, states, cap, chunk, stats, keep_last=batch.last_index)
            for start, hidden_last in zip(column, finals):
                logits = last_logits(pair.post, hidden_last, torch.zeros_like(batch.last_index))
                stats.head_rows += num_prompts
                progress.update(1)
                yield IntervalScores(start, end, score_logits(logits, encoded, list(range(num_prompts))))
        active = {i: h for i, h in active.items() if last_needed[i] > end}
    progress.close()


def _apply(layers, first_idx, states, cap, chunk, stats, keep_last=None):
    """Run `layers` (at positions first_idx...) over a list of [P, T, d] states, in row chunks.

    With keep_last, return only each row's last real position, shaped [P, 1, d].
    """
    num_prompts = cap.num_prompts
    # Layers on several devices leave their outputs where they ran: gather on the first state's device.
    stacked = torch.cat([s.to(states[0].device) for s in states]) if len(states) > 1 else states[0]
    prompt_rows = torch.arange(stacked.shape[0]) % num_prompts
    results = []
    for lo in range(0, stacked.shape[0], chunk):
        hidden, rows = stacked[lo : lo + chunk], prompt_rows[lo : lo + chunk]
        for offset, layer in enumerate(layers):
            hidden = run_layer(layer, first_idx + offset, hidden, rows, cap)
            stats.layer_evals += hidden.shape[0]
            stats.token_layer_evals += hidden.shape[0] * hidden.shape[1]
        if keep_last is not None:
            index = keep_last.index_select(0, rows.to(keep_last.device)).to(hidden.device)
            hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), index][:, None]
        results.append(hidden)
    merged = torch.cat(results)
    return list(merged.split(num_prompts))


@torch.inference_mode()
def naive_interval_scores(
    pair: ModelPair, encoded: EncodedPrompts, start: int, end: int, stats: Stats | None = None
) -> torch.Tensor:
    """The paper-style reference: build the hybrid, run each prompt alone, full forward."""
    hybrid = build_hybrid(pair, start, end)
    rows = []
    for ids in encoded.input_ids:
        input_ids = torch.tensor([ids], device=pair.device)
        rows.append(hybrid(input_ids=input_ids, use_cache=False).logits[0, -1].float())
        if stats:
            stats.layer_evals += pair.num_layers
            stats.token_layer_evals += pair.num_layers * len(ids)
            stats.head_rows += len(ids)  # a plain forward computes logits at every position
    return score_logits(torch.stack(rows), encoded, list(range(len(encoded))))
