"""How the sweep calls a decoder layer: a shared prompt prefix once per state, the last layer narrowed.

Every CRC prompt starts with the same tokens (the chat template's start, often a default system
prompt). Causal attention makes their hidden states the same in every row, so each hybrid state
runs that prefix once, and each prompt row gets its keys and values through a transformers
DynamicCache passed to the layer's own forward. The last decoder layer's output is only read at the
kept positions (the last prompt token, the branches), so its feed-forward block runs on those only
(a hook on the layer's own MLP child). `check_layout` proves both on the post model before use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from slr_core.crc.branches import MASK_NAME, POSITION_NAMES, Batch
from slr_core.engine.capture import Capture
from slr_core.errors import UnsupportedArchitectureError
from slr_core.models import precision
from slr_core.models.architectures import block_name

CACHE_NAMES = ("past_key_values", "layer_past", "past_key_value")


@dataclass(frozen=True)
class Layout:
    """What the sweep may share: `prefix` leading tokens per state, the last layer's MLP on kept rows."""

    prefix: int = 0
    cache_name: str | None = None
    narrow_last: bool = False


def common_prefix(batch: Batch) -> int:
    """Leading tokens shared by every row, leaving each row's last prompt token out of it."""
    ids, shortest = batch.input_ids, int(batch.last_index.min())
    same = (ids[:, :shortest] == ids[:1, :shortest]).all(dim=0).tolist()
    return same.index(False) if False in same else shortest


def cache_name(cap: Capture) -> str | None:
    """The keyword through which the layers take a key/value cache (passed as None when recording)."""
    found = {name for kwargs in cap.kwargs for name in CACHE_NAMES if name in kwargs}
    return found.pop() if len(found) == 1 else None


def prefix_is_shared(cap: Capture, prefix: int) -> bool:
    """Whether every row's prefix states are the same at every layer, as causal attention implies
    (in half precision: within a multiple of the model's own rounding noise, cap.noise)."""
    atol = precision.tolerance(1e-4, cap.noise)
    return all(
        torch.allclose(h[:, :prefix], h[:1, :prefix].expand_as(h[:, :prefix]), atol=atol, rtol=1e-4)
        for h in cap.hidden_states
    )


def _window(name: str, value, rows: torch.Tensor, num_prompts: int, lo: int, hi: int):
    # Recorded arguments for rows `rows`, queries at positions lo..hi-1 and keys 0..hi-1.
    if isinstance(value, tuple | list):
        return type(value)(_window(name, v, rows, num_prompts, lo, hi) for v in value)
    if not isinstance(value, torch.Tensor):
        return value
    if value.dim() == 1 and name == "cache_position":
        return value[lo:hi]
    if value.dim() < 2:
        return value
    if value.shape[0] == num_prompts:
        value = value.index_select(0, rows.to(value.device))
    if name == MASK_NAME:
        return value[:, :, lo:hi, :hi]
    if name in POSITION_NAMES or name.startswith("position_embeddings"):
        return value[:, lo:hi]
    return value


class Arguments:
    """One layer-call's recorded arguments for a set of rows and a window, each cut once per window."""

    def __init__(self, cap: Capture, rows: torch.Tensor, lo: int, hi: int) -> None:
        self.cap, self.rows, self.lo, self.hi = cap, rows, lo, hi
        self.memo: dict[tuple[str, int], object] = {}  # layers of one kind share one recorded mask

    def _cut(self, name: str, value):
        key = (name, id(value))
        if key not in self.memo:
            self.memo[key] = _window(name, value, self.rows, self.cap.num_prompts, self.lo, self.hi)
        return self.memo[key]

    def for_layer(self, layer_idx: int) -> tuple[tuple, dict]:
        """Positional and keyword arguments of layer `layer_idx`, cut to these rows and this window."""
        kwargs = {name: self._cut(name, value) for name, value in self.cap.kwargs[layer_idx].items()}
        return tuple(self._cut("", v) for v in self.cap.args[layer_idx]), kwargs


def call_layer(layer: nn.Module, layer_idx: int, hidden, arguments: Arguments, cache=None, cache_kw=None):
    """Run `layer` as the model does, with a key/value cache of the positions before the window."""
    args, kwargs = arguments.for_layer(layer_idx)
    if cache is not None:
        kwargs[cache_kw] = cache
    output = layer(hidden, *args, **kwargs)
    return output[0] if isinstance(output, tuple) else output


def recording_cache() -> DynamicCache:
    """An empty cache: the layer's own attention stores the prefix's keys and values in it."""
    return DynamicCache()


def recorded(cache: DynamicCache) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values one layer call stored in `cache`."""
    filled = [layer for layer in cache.layers if getattr(layer, "keys", None) is not None]
    if len(filled) != 1:
        raise UnsupportedArchitectureError(
            f"A decoder layer stored keys and values for {len(filled)} layers in one call; the shared "
            "prefix cannot be replayed for this model."
        )
    return filled[0].keys, filled[0].values


def prefix_cache(
    keys: torch.Tensor, values: torch.Tensor, layer_idx: int, rows: torch.Tensor
) -> DynamicCache:
    """A cache holding the prefix's keys and values for each of `rows` (indices into the states)."""
    cache = DynamicCache()
    index = rows.to(keys.device)
    cache.update(keys.index_select(0, index), values.index_select(0, index), layer_idx)
    return cache


@contextmanager
def feed_forward_at(layer: nn.Module, index: torch.Tensor) -> Iterator[None]:
    """While active, `layer`'s MLP runs only at positions `index` [R, K] of each row (others get 0)."""
    mlp = layer._modules[block_name(layer, "mlp")]
    shapes: list = []

    def before(_module, args, kwargs):
        hidden = args[0] if args else kwargs.get("hidden_states")
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or hidden.shape[0] != index.shape[0]:
            raise UnsupportedArchitectureError("the last layer's MLP input is not [rows, positions, hidden]")
        shapes.append(hidden.shape)
        picked = hidden.gather(1, index.to(hidden.device)[:, :, None].expand(-1, -1, hidden.shape[-1]))
        if args:
            return (picked, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": picked}

    def after(_module, _args, _kwargs, output):
        first = output[0] if isinstance(output, tuple) else output
        spread = first.new_zeros(shapes.pop())
        spread.scatter_(1, index.to(first.device)[:, :, None].expand(-1, -1, first.shape[-1]), first)
        return (spread, *output[1:]) if isinstance(output, tuple) else spread

    handles = [
        mlp.register_forward_pre_hook(before, with_kwargs=True),
        mlp.register_forward_hook(after, with_kwargs=True),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
