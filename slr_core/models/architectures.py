"""Where a model keeps its decoder layers, final norm and head: found on the model itself.

The one place that knows how a decoder-only model is laid out. Nothing here lists classes: the text
model is the module that owns the input embeddings (so a vision tower's layers are never taken); its
decoder layers are the ModuleList there with `config.get_text_config().num_hidden_layers` entries;
its final norm is the norm module beside them. The head is the output embeddings, then whatever
logit transform the model's own forward applies: a scaling (Granite's `logits_scaling` divides,
Cohere's `logit_scale` multiplies) and Gemma's final soft-capping. Which of these a model applies,
and in which direction, is read from its config and from its class's forward, and the sweep's
`check_tail` proves the result equal to the model's own logits before any sweep work.

Embedding and residual multipliers, rotary or NoPE layers, sliding windows, MoE routing and
per-layer attention types all live inside the embeddings or the layers, which the sweep calls as the
model calls them, so nothing about them is needed here.
"""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass

import torch
from torch import nn

from slr_core.errors import UnsupportedArchitectureError

# Names a final norm goes by, in order of preference when a text model has several norm children.
NORM_NAMES = ("norm", "final_layer_norm", "final_layernorm", "ln_f", "norm_f", "final_norm")
# Preferred names of the decoder-layer list when several ModuleLists have the right length.
LAYER_LIST_NAMES = ("layers", "h", "blocks", "layer")
# Head scalings the text config may carry: applied when the model's forward names them.
SCALE_KNOBS = ("logits_scaling", "logit_scale", "lm_head_multiplier", "output_multiplier")

# Names of a decoder layer's attention child and of its feed-forward (MLP or MoE) child, by family.
BLOCK_NAMES = {
    "attention": ("self_attn", "attention", "attn", "self_attention"),
    "mlp": ("mlp", "block_sparse_moe", "feed_forward", "moe", "ffn"),
}

# Families transformers loads as causal LMs whose decoder layers exchange state outside the hidden
# states (so one layer cannot be swapped or replayed on its own), keyed by model_type. Any other model
# whose config shares keys and values across layers (`kv_sharing_modes`) is refused the same way.
UNREPLAYABLE = {
    "gemma3n": (
        "its decoder layers carry AltUp predictions beside the hidden state and its last layers reuse "
        "earlier layers' keys and values, so a restored layer's effect cannot be replayed layer by layer"
    ),
}


@dataclass(frozen=True)
class Architecture:
    """Where one model keeps its text stack, and what its head does after the LM head matmul."""

    model_class: str
    text_model: str  # dotted path of the module that owns the input embeddings ('' for the root)
    layers: str  # dotted path of the decoder-layer ModuleList, e.g. 'model.language_model.layers'
    norm: str  # dotted path of the final norm
    num_layers: int
    multiplier: float | None = None  # logits *= multiplier (Cohere logit_scale)
    divisor: float | None = None  # logits /= divisor (Granite logits_scaling)
    softcap: float | None = None  # logits = tanh(logits / softcap) * softcap (Gemma 2)


def _unsupported(model: nn.Module, because: str) -> UnsupportedArchitectureError:
    return UnsupportedArchitectureError(f"{type(model).__name__} is unsupported, because {because}.")


def text_config(model: nn.Module):
    """The config of the model's text stack (the model's own config for text-only models)."""
    config = getattr(model, "config", None)
    if config is None:
        raise _unsupported(model, "it has no transformers config")
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def describe(model: nn.Module) -> Architecture:
    """Find the text stack of `model`, or raise UnsupportedArchitectureError saying why not."""
    config = getattr(model, "config", None)
    if config is None:
        raise _unsupported(model, "it has no transformers config")
    text = text_config(model)
    for model_type in (getattr(config, "model_type", None), getattr(text, "model_type", None)):
        family = (model_type or "").removesuffix("_text")  # e.g. gemma3n_text, a text-only gemma3n
        if family in UNREPLAYABLE:
            raise _unsupported(model, UNREPLAYABLE[family])
    sharing = _kv_sharing_layers(text)
    if sharing:
        raise _unsupported(
            model,
            f"its decoder layers {sharing} reuse keys and values stored by earlier layers (KV sharing): "
            "the sweep replays one layer at a time and cannot hand those states across",
        )
    if getattr(config, "is_encoder_decoder", False):
        raise _unsupported(
            model, "it is an encoder-decoder model; SLR restores layers of decoder-only models"
        )
    num_layers = getattr(text, "num_hidden_layers", None)
    if not isinstance(num_layers, int) or num_layers < 1:
        raise _unsupported(model, "its text config gives no num_hidden_layers")
    modules = dict(model.named_modules())
    text_path = _text_model_path(model, modules)
    layers = _layer_list_path(model, modules, text_path, num_layers)
    norm = _final_norm_path(model, modules, text_path, layers)
    if model.get_output_embeddings() is None:
        raise _unsupported(model, "it has no output embeddings (LM head)")
    multiplier, divisor, softcap = _head_transform(model, text)
    return Architecture(
        type(model).__name__, text_path, layers, norm, num_layers, multiplier, divisor, softcap
    )


def _kv_sharing_layers(text) -> list[int]:
    try:
        modes = getattr(text, "kv_sharing_modes", None)
    except (AttributeError, TypeError, IndexError):
        return []
    if not isinstance(modes, list | tuple):
        return []
    return [k for k, mode in enumerate(modes) if mode not in (None, "store")]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _text_model_path(model: nn.Module, modules: dict[str, nn.Module]) -> str:
    try:
        embeddings = model.get_input_embeddings()
    except (NotImplementedError, AttributeError):
        embeddings = None
    if embeddings is None:
        raise _unsupported(model, "it has no input embeddings to find its text model by")
    paths = [name for name, module in modules.items() if module is embeddings and name]
    if not paths:
        raise _unsupported(model, "its input embeddings are not one of its submodules")
    return paths[0].rpartition(".")[0]


def _under(path: str, prefix: str) -> bool:
    return not prefix or path.startswith(prefix + ".")


def _layer_list_path(model: nn.Module, modules: dict[str, nn.Module], text_path: str, num_layers: int) -> str:
    candidates = [
        name
        for name, module in modules.items()
        if isinstance(module, nn.ModuleList)
        and len(module) == num_layers
        and name
        and _under(name, text_path)
    ]
    direct = [name for name in candidates if name.rpartition(".")[0] == text_path]
    candidates = direct or candidates
    if len(candidates) > 1:
        named = [name for name in candidates if name.rpartition(".")[2] in LAYER_LIST_NAMES]
        candidates = named if len(named) == 1 else candidates
    if len(candidates) != 1:
        where = f"'{text_path}'" if text_path else "the model"
        found = "none" if not candidates else ", ".join(candidates)
        raise _unsupported(
            model,
            f"no single ModuleList of {num_layers} decoder layers (the text config's num_hidden_layers) "
            f"sits under {where} (found: {found})",
        )
    return candidates[0]


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm | nn.RMSNorm) or "norm" in type(module).__name__.lower()


def _final_norm_path(model: nn.Module, modules: dict[str, nn.Module], text_path: str, layers: str) -> str:
    children = [
        name
        for name, module in modules.items()
        if name and name.rpartition(".")[0] == text_path and name != layers and _is_norm(module)
    ]
    if len(children) > 1:
        for preferred in NORM_NAMES:
            if _join(text_path, preferred) in children:
                return _join(text_path, preferred)
    if len(children) != 1:
        found = "none" if not children else ", ".join(children)
        raise _unsupported(model, f"no single final norm sits beside its decoder layers (found: {found})")
    return children[0]


@functools.cache
def _forward_source(cls: type) -> str | None:
    for klass in cls.__mro__:
        if "forward" in vars(klass):
            try:
                return inspect.getsource(vars(klass)["forward"])
            except (OSError, TypeError):
                return None
    return None


def _head_transform(model: nn.Module, text) -> tuple[float | None, float | None, float | None]:
    """(multiplier, divisor, softcap) the model's forward applies to the LM head's output."""
    source = _forward_source(type(model))
    multiplier = divisor = None
    for knob in SCALE_KNOBS:
        value = getattr(model, knob, None)
        value = value if isinstance(value, int | float) else getattr(text, knob, None)
        if not isinstance(value, int | float) or isinstance(value, bool) or value == 1:
            continue
        if source is not None and not re.search(rf"\b{knob}\b", source):
            continue  # the config carries it, but this class's forward does not use it
        divides = source is not None and re.search(rf"/\s*[\w.]*\b{knob}\b", source)
        if divides:
            divisor = float(value) if divisor is None else divisor * float(value)
        else:
            multiplier = float(value) if multiplier is None else multiplier * float(value)
    softcap = getattr(text, "final_logit_softcapping", None)
    if not softcap or (source is not None and "softcap" not in source):
        softcap = None  # e.g. Gemma3ForConditionalGeneration: its forward caps nothing
    return multiplier, divisor, float(softcap) if softcap else None


# ---------------------------------------------------------------- what the rest of SLR Explorer uses


def layers_path(model: nn.Module) -> str:
    """Dotted module path of the decoder-layer ModuleList, e.g. 'model.layers'."""
    return describe(model).layers


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's own decoder layers, in order (the text stack's, never a vision tower's)."""
    return model.get_submodule(layers_path(model))


def final_norm(model: nn.Module) -> nn.Module:
    """The norm applied after the last decoder layer."""
    return model.get_submodule(describe(model).norm)


def head_logits(model: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """Final norm, LM head, logit scaling and soft-capping on hidden states [..., d] -> float32 [..., V]."""
    arch = describe(model)
    logits = model.get_output_embeddings()(model.get_submodule(arch.norm)(hidden_states)).float()
    if arch.multiplier is not None:
        logits = logits * arch.multiplier
    if arch.divisor is not None:
        logits = logits / arch.divisor
    if arch.softcap is not None:
        logits = torch.tanh(logits / arch.softcap) * arch.softcap
    return logits


def block_name(layer: nn.Module, block: str) -> str:
    """The name of `layer`'s attention child (block 'attention') or feed-forward child ('mlp')."""
    found = [name for name in BLOCK_NAMES[block] if isinstance(layer._modules.get(name), nn.Module)]
    if len(found) != 1:
        children = ", ".join(layer._modules) or "none"
        raise UnsupportedArchitectureError(
            f"{type(layer).__name__} has no single {block} submodule (children: {children}); restore "
            "whole layers (--restore layer) for this model."
        )
    return found[0]


def is_norm(module: nn.Module) -> bool:
    """Whether `module` is a normalisation layer (LayerNorm, RMSNorm or a family's own *Norm)."""
    return _is_norm(module)


def checkpoint_module_path(model: nn.Module, path: str) -> str:
    """The checkpoint-file name prefix of the tensors under module `path` (what mergekit reads), e.g.
    'model.layers.3.block_sparse_moe' for Mixtral's 'model.layers.3.mlp'; `path` where nothing is renamed."""
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:
        return path
    # Smallest tensors first: a router or norm renames alone, a fused expert tensor needs its siblings.
    named = sorted(model.get_submodule(path).state_dict().items(), key=lambda item: item[1].numel())
    for name, tensor in named:
        try:
            reverted = revert_weight_conversion(model, {f"{path}.{name}": tensor})
        except Exception:  # noqa: BLE001 - a converter that needs its sibling tensors: try the next
            continue
        if len(reverted) == 1:
            key = next(iter(reverted))
            if key.endswith(f".{name}"):
                return key[: -len(name) - 1]
    return path


def checkpoint_layers_path(model: nn.Module) -> str:
    """Prefix of the decoder layers' tensor names in checkpoint files (what save_pretrained writes and
    mergekit reads), e.g. 'language_model.model.layers' for Gemma 3 4B+ whose modules sit at
    'model.language_model.layers'; the module path where transformers renames nothing."""
    # The layer list is a module like any other: its smallest tensor (a norm weight) renames alone.
    return checkpoint_module_path(model, layers_path(model))
