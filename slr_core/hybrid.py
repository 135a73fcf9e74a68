"""SLR hybrids: the post-trained model with decoder layers [i, j] taken from the pre-trained one.

A hybrid is a shallow copy of the post-trained model along the path to its layer list, whose new
ModuleList holds the pre-trained layer modules for i..j and the post-trained ones elsewhere. No
tensor is copied or changed: building one takes microseconds, uses no weight memory, and the
post-trained model is never touched, so concurrent requests can each hold their own hybrid.
Layers keep their position, so index-dependent behaviour (Gemma's sliding-window pattern,
KV-cache layer indices) stays right.
"""

from __future__ import annotations

import copy

from torch import nn

from .architectures import decoder_layers, layers_path
from .errors import IntervalError
from .models import ModelPair
from .placement import rebind_forward


def check_interval(start: int, end: int, num_layers: int) -> None:
    """Raise IntervalError unless 0 <= start <= end <= num_layers - 1."""
    if not (isinstance(start, int) and isinstance(end, int)):
        raise IntervalError(f"Interval bounds must be integers, got [{start!r}, {end!r}].")
    if not 0 <= start <= end <= num_layers - 1:
        raise IntervalError(
            f"Interval [{start}, {end}] is invalid for a {num_layers}-layer model: "
            f"need 0 <= i <= j <= {num_layers - 1} (0-based, inclusive)."
        )


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


def restored_layers(pair: ModelPair, start: int, end: int) -> list[nn.Module]:
    """The layer list of hybrid [start, end]: pre-trained modules inside, post-trained outside."""
    check_interval(start, end, pair.num_layers)
    pre_layers, post_layers = decoder_layers(pair.pre), decoder_layers(pair.post)
    return [pre_layers[k] if start <= k <= end else post_layers[k] for k in range(len(post_layers))]


def build_hybrid(pair: ModelPair, start: int, end: int) -> nn.Module:
    """The SLR hybrid M_{start:end}; embeddings, final norm and LM head stay post-trained."""
    return with_layers(pair.post, restored_layers(pair, start, end))
