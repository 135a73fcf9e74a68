"""How far post-training moved each decoder layer: relative Frobenius norm of post - pre."""

from __future__ import annotations

import torch

from slr_core.models.architectures import decoder_layers
from slr_core.models.loading import ModelPair


@torch.no_grad()
def layer_drift(pair: ModelPair) -> list[float]:
    """||W_post - W_pre||_F / ||W_pre||_F per decoder layer, over all of the layer's parameters."""
    drifts = []
    for pre_layer, post_layer in zip(decoder_layers(pair.pre), decoder_layers(pair.post), strict=True):
        pre_parameters = dict(pre_layer.named_parameters())
        difference_squared, reference_squared = 0.0, 0.0
        for name, post_parameter in post_layer.named_parameters():
            # float64 sums, one tensor at a time: exact enough and no copy of a whole layer.
            pre_parameter = pre_parameters[name].double()
            difference_squared += float((post_parameter.double() - pre_parameter).square().sum())
            reference_squared += float(pre_parameter.square().sum())
        drifts.append(
            (difference_squared / reference_squared) ** 0.5 if reference_squared > 0 else float("nan")
        )
    return drifts
