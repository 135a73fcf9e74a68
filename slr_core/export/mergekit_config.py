"""The mergekit config that rebuilds an exported hybrid from its pair's checkpoints.

A linear merge with per-tensor weights: mergekit reads files, so tensors are named as the
checkpoints spell them, and weights 0 and 1 copy a tensor exactly.
"""

from __future__ import annotations

import yaml

from slr_core.models.architectures import (
    block_name,
    checkpoint_layers_path,
    checkpoint_module_path,
    decoder_layers,
    is_norm,
    layers_path,
)
from slr_core.models.loading import ModelPair
from slr_core.models.sources import Source
from slr_core.slr.hybrid import Restoration, interval_restoration

MERGEKIT_FILE = "mergekit.yaml"


def layer_filters(prefix: str, start: int, end: int) -> list[str]:
    """mergekit filters of layers start..end; the trailing dot keeps 'layers.1.' off 'layers.12.'."""
    return [f"{prefix}.{k}." for k in range(start, end + 1)]


def merge_config(post_ref: str, pre_ref: str, prefix: str, start: int, end: int, dtype: str) -> dict:
    """A linear merge whose per-tensor weights pick the pre model inside [start, end], post elsewhere.

    Passthrough slices would take the embeddings from the first slice and the LM head from the last,
    which breaks intervals touching either end; filtered weights of 0 and 1 copy each tensor exactly.
    The first matching filter wins, so the unfiltered default goes last.
    """
    return filtered_merge(post_ref, pre_ref, [(f, 1) for f in layer_filters(prefix, start, end)], dtype)


def filtered_merge(post_ref: str, pre_ref: str, filters: list[tuple[str, float]], dtype: str) -> dict:
    """A linear merge: a tensor matching filter f is (1 - w) x post + w x pre, any other the post's.

    Weights 0 and 1 copy a tensor exactly; the first matching filter wins, the default goes last.
    """

    def weights(pre_side: bool) -> list[dict]:
        entries = [{"filter": f, "value": _weight(w if pre_side else 1 - w)} for f, w in filters]
        return entries + [{"value": 0 if pre_side else 1}]

    return {
        "merge_method": "linear",
        "base_model": post_ref,
        "dtype": dtype,
        "models": [
            {"model": post_ref, "parameters": {"weight": weights(False)}},
            {"model": pre_ref, "parameters": {"weight": weights(True)}},
        ],
    }


def _weight(value: float) -> float | int:
    return int(value) if value in (0, 1) else round(value, 12)  # 1 - 0.7 is 0.30000000000000004


def restoration_filters(pair: ModelPair, restoration: Restoration) -> list[tuple[str, float]]:
    """(checkpoint-name filter, pre weight) per restored tensor group; norms in partial modes get 0."""
    weight, path = restoration.fraction, layers_path(pair.post)
    if restoration.mode == "layer":
        prefix = checkpoint_layers_path(pair.post)
        return [(f"{prefix}.{k}.", weight) for k in restoration.layers]
    filters, layers = [], decoder_layers(pair.post)
    for k in restoration.layers:
        name = block_name(layers[k], restoration.mode)
        block = checkpoint_module_path(pair.post, f"{path}.{k}.{name}")
        modules = layers[k]._modules[name].named_modules()
        filters += [(f"{block}.{n}.", 0) for n, module in modules if n and is_norm(module)]
        filters.append((f"{block}.", weight))
    return filters


def mergekit_reference(source: Source, fingerprint: str) -> tuple[str, str]:
    """How mergekit names a source model, and a comment on it."""
    if source.kind == "hub":
        pinned = fingerprint.split(":", 1)[1] if fingerprint.startswith("hub:") else source.spec
        return pinned, f"{source.spec}, pinned to the commit SLR Explorer loaded"
    if source.kind == "folder":
        return source.location, "a local folder"
    if source.kind == "gguf":
        return source.location, "a GGUF file: mergekit reads safetensors, so convert it to a folder first"
    from slr_core.models.demo import ADAPTER_DIR, demo_base_dir

    base = str(demo_base_dir())
    if source.location == "pre":
        return base, "the demo's Gemma 3 270M base, a local snapshot dequantized from its GGUF"
    return f"{base}+{ADAPTER_DIR}", "the demo base plus the demo LoRA adapter (mergekit merges it)"


def mergekit_yaml(pair: ModelPair, start: int, end: int, restoration: Restoration | None = None) -> str:
    """mergekit.yaml that rebuilds the hybrid (interval [start, end], or `restoration`) from the pair."""
    restoration = restoration or interval_restoration(start, end)
    post_ref, post_note = mergekit_reference(pair.post_source, pair.post_fingerprint)
    pre_ref, pre_note = mergekit_reference(pair.pre_source, pair.pre_fingerprint)
    dtype = str(pair.weights_dtype).replace("torch.", "")  # the export's own dtype
    # Tensor names as the checkpoints spell them: mergekit reads files, not modules.
    config = filtered_merge(post_ref, pre_ref, restoration_filters(pair, restoration), dtype)
    label = " ".join(pair.label.split())  # one line, so the YAML comment cannot break
    part = {"layer": "Decoder layers", "attention": "The attention of layers", "mlp": "The MLP of layers"}
    exact = (
        "# A linear merge with weights 0/1 per tensor: each output tensor is an exact copy."
        if restoration.fraction == 1
        else f"# A linear merge: restored tensors are (1 - {restoration.fraction:g}) x post + "
        f"{restoration.fraction:g} x pre."
    )
    header = [
        f"# SLR hybrid {restoration.label} of {label}",
        f"# {part[restoration.mode]} {restoration.span} (0-based) come from the pre-trained model; the",
        "# embeddings, all other weights (every norm, in partial modes), the final norm and the LM head",
        "# from the post-trained one.",
        exact,
        f"# post-trained: {post_note}",
        f"# pre-trained:  {pre_note}",
        f"# Run: mergekit-yaml {MERGEKIT_FILE} ./rebuilt",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
