"""Where a pair's modules sit when accelerate spreads the two models over several devices.

A restored layer must sit where the layer it replaces sits, so the hidden state visits the same
devices in the same order in every hybrid. The post-trained model is placed first, with room left
for its partner; the pre-trained one is then loaded with the post-trained model's resolved map,
module for module. Hybrids copy the modules on the path to the layer list; accelerate binds each
hooked module's forward to that module, so copies must be re-bound (rebind_forward).
"""

from __future__ import annotations

import functools
import types

import torch
from torch import nn

from slr_core.models.architectures import decoder_layers, layers_path
from slr_core.models.device_maps import resolved_map
from slr_core.models.settings import Settings


def shared_max_memory() -> dict:
    """Half of each device's free memory: the post-trained model's share, the rest is its partner's."""
    from accelerate.utils import get_max_memory

    return {device: free // 2 for device, free in get_max_memory().items()}


def post_placement(settings: Settings) -> dict:
    """from_pretrained placement arguments for the post-trained model (empty: no device map)."""
    device_map = resolved_map(settings.device_map)
    if not device_map:
        return {}
    if isinstance(device_map, str):
        return {"device_map": device_map, "max_memory": shared_max_memory()}
    return {"device_map": device_map}


def pre_placement(post: nn.Module, settings: Settings) -> dict:
    """Arguments that load the pre-trained model module for module where the post-trained one is."""
    if not settings.device_map:
        return {}
    device_map = getattr(post, "hf_device_map", None)
    if device_map:
        return {"device_map": dict(device_map)}
    # transformers records no map when everything landed on one device: follow the post model there.
    first = next(post.parameters(), None)
    return {"device_map": {"": str(first.device)}} if first is not None else {}


def mapped_device(device_map: dict, name: str) -> str | int | None:
    """The device a map gives module `name`: the entry of the longest key that is it or an ancestor."""
    best = None
    for key in device_map:
        if key == "" or name == key or name.startswith(key + "."):
            if best is None or len(key) > len(best):
                best = key
    return None if best is None else device_map[best]


def _as_device(value) -> str:
    return f"cuda:{value}" if isinstance(value, int) else str(value)


def layer_devices(model: nn.Module) -> list[str]:
    """Where each decoder layer is placed: its device-map entry, else its first parameter's device."""
    device_map = getattr(model, "hf_device_map", None) or {}
    prefix, devices = layers_path(model), []
    for index, layer in enumerate(decoder_layers(model)):
        mapped = mapped_device(device_map, f"{prefix}.{index}")
        if mapped is None:
            first = next(layer.parameters(), None)
            mapped = first.device if first is not None else torch.device("cpu")
        devices.append(_as_device(mapped))
    return devices


def misplaced_layers(pre: nn.Module, post: nn.Module) -> list[int]:
    """Indices k where pre-trained layer k is not placed where post-trained layer k is."""
    return [k for k, (a, b) in enumerate(zip(layer_devices(pre), layer_devices(post), strict=True)) if a != b]


def rebind_forward(clone: nn.Module, original: nn.Module) -> None:
    """Make a shallow copy of an accelerate-hooked module run itself, not the module it was copied from."""
    wrapper = original.__dict__.get("forward")
    if not (isinstance(wrapper, functools.partial) and wrapper.args and wrapper.args[0] is original):
        return  # no hook: the class's forward already binds to the copy
    old_forward = original.__dict__.get("_old_forward")
    if isinstance(old_forward, types.MethodType) and old_forward.__self__ is original:
        clone._old_forward = types.MethodType(old_forward.__func__, clone)
    rebound = functools.partial(wrapper.func, clone, *wrapper.args[1:], **wrapper.keywords)
    clone.forward = functools.update_wrapper(rebound, clone._old_forward)


def describe(model: nn.Module) -> str:
    """One line: how many decoder layers sit on each device, e.g. 'cuda:0 x14, cuda:1 x14'."""
    counts: dict[str, int] = {}
    for device in layer_devices(model):
        counts[device] = counts.get(device, 0) + 1
    return ", ".join(f"{device} x{count}" for device, count in counts.items())
