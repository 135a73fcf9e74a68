"""The sweep's layer engine: runs stacks of decoder layers over many hidden states, batched and chunked.

A state is one start's hidden states: the shared prefix once ([prefix, d]) and each prompt's rest
([P, W - prefix, d]). Rows (prompt x start) go through in chunks of about `batch_tokens` tokens,
each cut to its widest row; layers are called with the recorded arguments (prefix.call_layer).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from slr_core.crc.branches import Batch
from slr_core.engine.capture import Capture, kept_positions
from slr_core.engine.prefix import (
    Arguments,
    Layout,
    cache_name,
    call_layer,
    common_prefix,
    feed_forward_at,
    prefix_cache,
    prefix_is_shared,
    recorded,
    recording_cache,
)
from slr_core.errors import UnsupportedArchitectureError
from slr_core.models import precision

State = tuple[torch.Tensor, torch.Tensor]  # (prefix [prefix, d], rest [P, W - prefix, d])


@dataclass
class Stats:
    """Work done: decoder-layer evaluations counted per sequence, and token-layer products."""

    layer_evals: int = 0
    token_layer_evals: int = 0
    head_rows: int = 0  # positions that went through the final norm and LM head
    heads_reused: int = 0  # trie nodes visited from a head an earlier layout of the same model ran
    branches_skipped: int = 0  # answer branches (trie nodes) whose head was provably negligible
    omitted_mass: float = 0.0  # the largest per-prompt mass of spellings a pruned trie left out
    omitted_share: float = 0.0  # the largest such mass as a fraction of its prompt's Q (before relaying)
    prompts_relaid: int = 0  # (prompt, interval) results laid out again for the hybrid (layouts.rescored)
    relays_seeded: int = 0  # of those, started from the layout the prompt's last relay ended with
    mlp_tokens_skipped: int = 0  # last-layer positions whose MLP was not needed
    layout: Layout | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the wall time of the block to `phase` (asynchronous devices: only roughly)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started


def choose_layout(layers: list[nn.Module], cap: Capture, batch: Batch, share: bool = True) -> Layout:
    """The most sharing proven on the post model; anything unproven falls back, with a warning."""
    if not share:
        return Layout()
    prefix, name = common_prefix(batch), cache_name(cap)
    candidates = []
    if prefix > 0 and name and prefix_is_shared(cap, prefix):
        candidates.append(Layout(prefix, name, narrow_last=True))
        candidates.append(Layout(prefix, name))
    candidates.append(Layout(narrow_last=True))
    for layout in candidates:
        problem = _disproof(layers, cap, batch, layout)
        if problem is None:
            return layout
        warnings.warn(f"sweep: not using {layout} ({problem}); falling back", stacklevel=2)
    return Layout()


def _disproof(layers, cap: Capture, batch: Batch, layout: Layout) -> str | None:
    # Run the whole post stack the shared way on a few telling rows; it must give the recorded states.
    cap, batch = _subset(cap, batch, _telling_rows(batch))
    engine = Engine(cap, batch, 1 << 30, Stats(), layout)
    try:
        ours = engine.apply(layers, 0, [engine.initial(0)], keep=True)[0]
    except (UnsupportedArchitectureError, RuntimeError, ValueError, TypeError, IndexError) as error:
        return f"{type(error).__name__}: {error}"  # e.g. a layer that cannot take the prefix cache
    plain = kept_positions(cap.hidden_states[-1], batch.keep_index).to(ours.device)
    scale = float(plain.abs().max()) or 1.0
    gap = float((ours.float() - plain.float()).abs().max())
    # float32: 1e-4 of the scale, as ever; half precision adds a multiple of the model's own rounding.
    if gap <= precision.tolerance(1e-4 * scale, cap.noise):
        return None
    why = precision.explain(gap, 1e-4 * scale, cap.noise, plain.dtype)
    return f"differs from the recorded pass by {why}"


def _telling_rows(batch: Batch) -> list[int]:
    # The first, shortest and longest prompts and the one with most branches: every width case.
    prompt_lengths, row_widths = batch.last_index, batch.widths
    picks = [0, int(prompt_lengths.argmin()), int(prompt_lengths.argmax()), int(row_widths.argmax())]
    return sorted(set(picks))


def _subset(cap: Capture, batch: Batch, rows: list[int]) -> tuple[Capture, Batch]:
    """The capture and batch of prompts `rows` only (batch-shaped recorded tensors follow the rows)."""
    index, memo = torch.tensor(rows), {}

    def pick(value):
        if isinstance(value, tuple | list):
            return type(value)(pick(v) for v in value)
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == cap.num_prompts:
            if id(value) not in memo:  # one mask shared by many layers is selected once
                memo[id(value)] = value.index_select(0, index.to(value.device))
            return memo[id(value)]
        return value

    picked = Capture(
        [pick(h) for h in cap.hidden_states],
        [pick(a) for a in cap.args],
        [{name: pick(v) for name, v in kwargs.items()} for kwargs in cap.kwargs],
        len(rows),
        cap.first_call,
        cap.noise,
    )
    columns = (getattr(batch, f.name) for f in fields(batch))
    return picked, Batch(*(t.index_select(0, index.to(t.device)) for t in columns))


class Engine:
    """Applies layers to lists of states, one list entry per start, as the sweep's columns need."""

    def __init__(self, cap: Capture, batch: Batch, batch_tokens: int, stats: Stats, layout: Layout) -> None:
        self.cap, self.batch, self.batch_tokens, self.stats, self.layout = (
            cap,
            batch,
            batch_tokens,
            stats,
            layout,
        )
        stats.layout = layout
        self.num_layers = len(cap.args)

    def initial(self, layer_idx: int) -> State:
        """The recorded input of layer `layer_idx`, split into prefix and rest."""
        hidden, prefix = self.cap.hidden_states[layer_idx], self.layout.prefix
        return hidden[0, :prefix], hidden[:, prefix:]

    def apply(self, layers, first_idx: int, states: list[State], keep: bool = False) -> list:
        """Run `layers` (at positions first_idx...) over each state; with keep, only kept positions.

        With keep the result per state is [P, 1 + K, d] (last prompt position, then branches).
        """
        keys_values, prefixes = self._prefix(layers, first_idx, [s[0] for s in states])
        rests = self._rests(layers, first_idx, [s[1] for s in states], keys_values, keep)
        return rests if keep else list(zip(prefixes, rests))

    def _prefix(self, layers, first_idx: int, prefixes: list[torch.Tensor]):
        # The shared prefix, once per state: its keys and values at each layer, and its output.
        if not self.layout.prefix:
            return [], prefixes
        hidden = torch.stack([p.to(prefixes[0].device) for p in prefixes])  # [S, prefix, d]
        arguments = Arguments(self.cap, torch.zeros(len(prefixes), dtype=torch.long), 0, self.layout.prefix)
        keys_values = []
        for offset, layer in enumerate(layers):
            cache = recording_cache()
            with self.stats.timed("layer calls"):
                hidden = call_layer(
                    layer, first_idx + offset, hidden, arguments, cache, self.layout.cache_name
                )
            keys_values.append(recorded(cache))
            self.stats.token_layer_evals += hidden.shape[0] * hidden.shape[1]
        return keys_values, list(hidden.unbind(0))

    def _rests(self, layers, first_idx: int, rests: list[torch.Tensor], keys_values, keep: bool):
        num_starts, num_prompts, prefix = len(rests), self.cap.num_prompts, self.layout.prefix
        flat = torch.stack([r.to(rests[0].device) for r in rests], dim=1).flatten(0, 1)  # row = p * S + s
        out_shape = (flat.shape[0], self.batch.num_kept if keep else flat.shape[1], flat.shape[-1])
        out = torch.zeros(out_shape, dtype=flat.dtype, device=flat.device)
        keep_index = self.batch.keep_index - prefix
        widths = self.batch.widths.cpu() - prefix
        for rows, width in _chunks(widths, num_starts, self.batch_tokens):
            prompt_rows = rows // num_starts
            hidden = flat.index_select(0, rows.to(flat.device))[:, :width]
            arguments = Arguments(self.cap, prompt_rows, prefix, prefix + width)
            kept = keep_index.index_select(0, prompt_rows.to(keep_index.device))
            for offset, layer in enumerate(layers):
                cache = None
                if prefix:
                    cache = prefix_cache(*keys_values[offset], first_idx + offset, rows % num_starts)
                narrow = keep and self.layout.narrow_last and first_idx + offset == self.num_layers - 1
                with (
                    feed_forward_at(layer, kept) if narrow else nullcontext(),
                    self.stats.timed("layer calls"),
                ):
                    hidden = call_layer(
                        layer, first_idx + offset, hidden, arguments, cache, self.layout.cache_name
                    )
                self._count(hidden, widths.index_select(0, prompt_rows), kept if narrow else None)
            if keep:
                out[rows.to(out.device)] = kept_positions(hidden, kept)
            else:
                out[rows.to(out.device), :width] = hidden
        return list(out.view(num_prompts, num_starts, *out.shape[1:]).unbind(1))

    def _count(self, hidden: torch.Tensor, widths: torch.Tensor, kept: torch.Tensor | None) -> None:
        self.stats.layer_evals += hidden.shape[0]
        self.stats.token_layer_evals += int(widths.sum())
        if kept is not None:
            self.stats.mlp_tokens_skipped += int(widths.sum()) - kept.numel()


def _chunks(widths: torch.Tensor, num_starts: int, batch_tokens: int) -> Iterator[tuple[torch.Tensor, int]]:
    # Rows of the same prompt (one per start) are neighbours; prompts go from narrow to wide.
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
