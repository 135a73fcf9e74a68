"""Proxy-Soup, the paper's weight-averaging baseline: M_alpha = alpha * M_pre + (1 - alpha) * M_post."""

from __future__ import annotations

import copy

import torch
from torch import nn

from slr_core.models.loading import ModelPair
from slr_core.models.precision import compute_dtype, is_split

ALPHAS = tuple(round(0.05 * step, 2) for step in range(21))


@torch.no_grad()
def blend_into(target: nn.Module, pair: ModelPair, alpha: float) -> nn.Module:
    """Overwrite `target` (a copy of the post-trained model) with the alpha soup; returns it."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    pre = dict(pair.pre.named_parameters())
    post = dict(pair.post.named_parameters())
    # Split weights (float32 compute on bfloat16 weights): the soup is held in the compute dtype, as a
    # float32 load would blend it; otherwise in the models' own dtype.
    keep = compute_dtype(target) if is_split(target) else None
    for name, parameter in target.named_parameters():
        # Computed in float32 so bf16 soups do not round twice.
        mixed = alpha * pre[name].float() + (1.0 - alpha) * post[name].float()
        if keep is not None and parameter.is_floating_point():
            parameter.data = mixed.to(device=parameter.device, dtype=keep)
        else:
            parameter.copy_(mixed.to(parameter.dtype))
    return target


def soup_model(pair: ModelPair, alpha: float) -> nn.Module:
    """A new model holding the alpha soup (costs one model's memory)."""
    return blend_into(copy.deepcopy(pair.post), pair, alpha)
