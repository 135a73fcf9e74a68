"""SLR hybrids: the post-trained model with decoder layers [i, j] taken from the pre-trained one.

A hybrid is a shallow copy of the post-trained model along the path to its layer list, whose new
ModuleList holds the pre-trained layer modules for i..j and the post-trained ones elsewhere. No
tensor is copied or changed: building one takes microseconds, uses no weight memory, and the
post-trained model is never touched, so concurrent requests can each hold their own hybrid.
Layers keep their position, so index-dependent behaviour (Gemma's sliding-window pattern,
KV-cache layer indices) stays right.

Beyond whole layers, a `Restoration` names any set of layers, a mode (`attention` or `mlp` restores
only that child of each layer, as a shallow copy of the post-trained layer; every norm, QK norms
inside the attention included, stays post-trained) and a fraction lambda, for which only the
restored tensors are materialised as (1 - lambda) * post + lambda * pre.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from slr_core.errors import IntervalError
from slr_core.models.architectures import block_name, decoder_layers, is_norm, layers_path
from slr_core.models.loading import ModelPair
from slr_core.models.placement import rebind_forward
from slr_core.models.precision import unit_dtype
from slr_core.slr.intervals import check_interval, check_mode


def _replace_along(module: nn.Module, names: list[str], leaf: nn.Module) -> nn.Module:
    # Copy only the modules on the path, each with its own child table; everything else is shared.
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    rebind_forward(clone, module)  # an accelerate hook would otherwise run `module`, not the copy
    child = leaf if len(names) == 1 else _replace_along(module._modules[names[0]], names[1:], leaf)
    clone._modules[names[0]] = child
    return clone


def with_layers(model: nn.Module, layers: list[nn.Module]) -> nn.Module:
    """A view of `model` running `layers` as its decoder stack; `model` itself is unchanged."""
    return _replace_along(model, layers_path(model).split("."), nn.ModuleList(layers))


def restored_layers(pair: ModelPair, start: int, end: int, mode: str = "layer") -> list[nn.Module]:
    """The layer list of hybrid [start, end]: restored modules inside, post-trained outside."""
    check_interval(start, end, pair.num_layers)
    return hybrid_layers(pair, Restoration(tuple(range(start, end + 1)), mode))


def build_hybrid(pair: ModelPair, start: int, end: int, mode: str = "layer") -> nn.Module:
    """The SLR hybrid M_{start:end}; embeddings, final norm and LM head stay post-trained."""
    return with_layers(pair.post, restored_layers(pair, start, end, mode))


# ---------------------------------------------------------------- partial and fractional restoration


@dataclass(frozen=True)
class Restoration:
    """Which layers come back (any set), which part of them (mode), and how far (fraction lambda)."""

    layers: tuple[int, ...]
    mode: str = "layer"
    fraction: float = 1.0

    def __post_init__(self) -> None:
        # One spelling per set: sorted, no repeats (so labels, names and cache keys agree).
        object.__setattr__(self, "layers", tuple(sorted(set(self.layers))))

    def check(self, num_layers: int) -> Restoration:
        """Raise IntervalError unless the layers exist, the mode is known and 0 < fraction <= 1."""
        check_mode(self.mode)
        if not self.layers:
            raise IntervalError("No layers chosen: pick an interval, or type layers like 3,5,9-11.")
        if any(not 0 <= k < num_layers for k in self.layers):
            raise IntervalError(
                f"Layers {self.span} are invalid for a {num_layers}-layer model: "
                f"use layers 0..{num_layers - 1}, e.g. '3,5,9-11'."
            )
        if not 0 < self.fraction <= 1:
            raise IntervalError(f"Fraction {self.fraction:g} is outside (0, 1]: give a lambda in (0, 1].")
        return self

    @property
    def interval(self) -> tuple[int, int] | None:
        """(i, j) when the layers are one contiguous run i..j, else None."""
        if not self.layers:
            return None
        first, last = self.layers[0], self.layers[-1]
        return (first, last) if self.layers == tuple(range(first, last + 1)) else None

    @property
    def span(self) -> str:
        """The layers as typed: '3,5,9-11'."""
        runs, parts = _runs(self.layers), []
        for first, last in runs:
            parts.append(str(first) if first == last else f"{first}-{last}")
        return ",".join(parts)

    @property
    def label(self) -> str:
        """A short name, e.g. '[13, 17]', '[13, 17] attention only' or 'layers 3,5 MLP only, λ=0.5'."""
        where = f"[{self.interval[0]}, {self.interval[1]}]" if self.interval else f"layers {self.span}"
        part = {"attention": " attention only", "mlp": " MLP only"}.get(self.mode, "")
        amount = "" if self.fraction == 1 else f", λ={self.fraction:g}"
        return f"{where}{part}{amount}"


def interval_restoration(start: int, end: int, mode: str = "layer", fraction: float = 1.0) -> Restoration:
    """The restoration of the contiguous layers start..end."""
    return Restoration(tuple(range(start, end + 1)), mode, fraction)


def _runs(layers: tuple[int, ...]) -> list[tuple[int, int]]:
    runs: list[list[int]] = []
    for k in layers:
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return [(first, last) for first, last in runs]


def restoring_layer(post_layer: nn.Module, pre_layer: nn.Module, mode: str = "layer", fraction: float = 1.0):
    """Layer k restored under `mode`: the pre-trained layer itself, or a shallow copy of the post-trained
    layer whose attention (or MLP/MoE) child is the pre-trained one, every norm kept post-trained.

    With fraction < 1 the restored tensors become (1 - fraction) * post + fraction * pre, the only
    tensors materialised; everything else is shared with the two models.
    """
    # Blends of split weights are kept in the compute dtype: what a load in that dtype would blend.
    dtype = unit_dtype(post_layer)
    if check_mode(mode) == "layer":
        return _take(post_layer, pre_layer, fraction, keep_norms=False, dtype=dtype)
    name = block_name(post_layer, mode)
    layer = _shallow(post_layer)
    layer._modules[name] = _take(
        post_layer._modules[name], pre_layer._modules[name], fraction, keep_norms=True, dtype=dtype
    )
    return layer


def _shallow(module: nn.Module) -> nn.Module:
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    rebind_forward(clone, module)  # an accelerate hook would otherwise run `module`, not the copy
    return clone


def _take(post: nn.Module, pre: nn.Module, fraction: float, keep_norms: bool, dtype=None) -> nn.Module:
    # Norms inside the block (QK norms) stay post-trained too: the rule is "every norm".
    if keep_norms and is_norm(pre):
        return post
    if fraction == 1 and not (keep_norms and any(is_norm(m) for m in pre.modules())):
        return pre
    clone = _shallow(pre)
    if fraction != 1:
        clone._parameters = {
            name: None if p is None else _blend(post._parameters[name], p, fraction, dtype)
            for name, p in pre._parameters.items()
        }
    for name, child in pre._modules.items():
        if child is not None:
            clone._modules[name] = _take(post._modules[name], child, fraction, keep_norms, dtype)
    return clone


@torch.no_grad()
def _blend(post: torch.Tensor, pre: torch.Tensor, fraction: float, dtype=None) -> nn.Parameter:
    # In float32, then cast: what a linear merge with weights 1 - fraction and fraction computes.
    mixed = (1 - fraction) * post.to(pre.device, torch.float32) + fraction * pre.float()
    keep = dtype if dtype is not None and pre.is_floating_point() else pre.dtype
    return nn.Parameter(mixed.to(keep), requires_grad=False)


def hybrid_layers(pair: ModelPair, restoration: Restoration) -> list[nn.Module]:
    """The decoder-layer list of a restoration: restored layers where chosen, post-trained elsewhere."""
    restoration.check(pair.num_layers)
    pre_layers, post_layers = decoder_layers(pair.pre), decoder_layers(pair.post)
    chosen = set(restoration.layers)
    return [
        restoring_layer(post_layers[k], pre_layers[k], restoration.mode, restoration.fraction)
        if k in chosen
        else post_layers[k]
        for k in range(len(post_layers))
    ]


def build_restored(pair: ModelPair, restoration: Restoration) -> nn.Module:
    """The hybrid of any restoration (set of layers, mode, fraction); the pair stays untouched."""
    return with_layers(pair.post, hybrid_layers(pair, restoration))


def restored_names(layer: nn.Module, mode: str) -> list[str]:
    """Names (relative to a decoder layer) of the parameters `mode` restores: all of them for 'layer',
    else those of the attention or MLP child outside its norms."""
    if check_mode(mode) == "layer":
        return [name for name, _ in layer.named_parameters()]
    name = block_name(layer, mode)
    block = layer._modules[name]
    norms = [f"{prefix}." for prefix, module in block.named_modules() if prefix and is_norm(module)]
    return [f"{name}.{p}" for p, _ in block.named_parameters() if not any(p.startswith(n) for n in norms)]


def materialised_bytes(pair: ModelPair, restoration: Restoration) -> int:
    """Bytes of new weights the restoration's hybrid holds: 0 at fraction 1 (all shared)."""
    if restoration.fraction == 1:
        return 0
    post_layers = decoder_layers(pair.post)
    total = 0
    for k in restoration.check(pair.num_layers).layers:
        tensors = dict(post_layers[k].named_parameters())
        total += sum(
            tensors[n].numel() * tensors[n].element_size()
            for n in restored_names(post_layers[k], restoration.mode)
        )
    return total
