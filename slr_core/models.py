"""Loading models: one model from a source, a checked pre/post pair, or a tokenizer alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .architectures import decoder_layers, describe, text_config
from .errors import IncompatibleModelsError, SourceError
from .placement import post_placement, pre_placement
from .settings import Settings
from .sources import Source, check_reachable, fingerprint, parse_source


def load_model(source: Source, settings: Settings, placement: dict | None = None) -> tuple[nn.Module, object]:
    """Load a causal LM and its tokenizer; `placement` (device_map, max_memory) overrides the settings'."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype, device = settings.torch_dtype, settings.torch_device
    if source.kind == "demo":
        from .demo import load_demo_model

        return load_demo_model(source.location, dtype, device)
    location, extra = source.location, {"trust_remote_code": settings.trust_remote_code}
    if source.kind == "gguf":
        location, extra["gguf_file"] = str(Path(location).parent), Path(location).name
    if source.revision:
        extra["revision"] = source.revision
    if placement is None:
        placement = {"device_map": settings.device_map} if settings.device_map else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **extra)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **extra, **placement)
    except (OSError, ValueError) as error:
        raise SourceError(_load_message(source, error)) from error
    if "device_map" not in placement:
        model.to(device)
    model.eval()
    return model, tokenizer


def _load_message(source: Source, error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if source.kind == "hub":
        return (
            f"Could not load '{source.spec}' from the Hugging Face Hub ({text}). The hub may be "
            "unreachable (offline?), the id or revision wrong, or the repo gated: give a local "
            "folder or .gguf file instead, or log in with `huggingface-cli login`."
        )
    return f"Could not load '{source.spec}' ({text})."


# ---------------------------------------------------------------- pairs


@dataclass
class ModelPair:
    """A pre-trained model, its post-trained counterpart, and the post-trained tokenizer."""

    pre: nn.Module
    post: nn.Module
    tokenizer: object
    pre_source: Source
    post_source: Source
    settings: Settings
    pre_fingerprint: str = ""
    post_fingerprint: str = ""
    label: str = ""

    @property
    def num_layers(self) -> int:
        """N, the number of decoder layers."""
        return len(decoder_layers(self.post))

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the post-trained input embeddings (never 'meta')."""
        return self.post.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the pair runs in."""
        return next(self.post.parameters()).dtype

    @property
    def identity(self) -> str:
        """Everything that determines the pair's numbers: fingerprints, dtype, device type."""
        return f"{self.pre_fingerprint}|{self.post_fingerprint}|{self.dtype}|{self.device.type}"

    def provenance(self) -> dict:
        """What identifies the pair's numbers, for sidecar files: sources, fingerprints, dtype."""
        return {
            "pair": self.label,
            "pre": self.pre_source.spec,
            "post": self.post_source.spec,
            "pre_fingerprint": self.pre_fingerprint,
            "post_fingerprint": self.post_fingerprint,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": self.device.type,
        }


def check_compatible(pre: nn.Module, post: nn.Module, pre_tokenizer=None, post_tokenizer=None) -> None:
    """Raise IncompatibleModelsError naming the first thing that differs, with both values.

    The pair must share the architecture, depth, hidden size, vocabulary size, every decoder-layer
    tensor shape and (when given) the tokenizer's vocabulary: post-trained token ids go into the
    pre-trained model too, so a different vocabulary would silently score the wrong tokens.
    """
    if type(pre) is not type(post):
        raise IncompatibleModelsError(
            f"Different architectures: pre-trained is {type(pre).__name__}, "
            f"post-trained is {type(post).__name__}."
        )
    pre_layers, post_layers = decoder_layers(pre), decoder_layers(post)
    if len(pre_layers) != len(post_layers):
        raise IncompatibleModelsError(
            f"Different depth: pre-trained has {len(pre_layers)} decoder layers, "
            f"post-trained has {len(post_layers)}."
        )
    for what, pre_value, post_value in (
        ("hidden sizes", _hidden_size(pre), _hidden_size(post)),
        ("vocabulary sizes (embedding rows)", _vocab_rows(pre), _vocab_rows(post)),
    ):
        if pre_value != post_value:
            raise IncompatibleModelsError(
                f"Different {what}: pre-trained has {pre_value}, post-trained has {post_value}."
            )
    problems = []
    for layer_idx, (pre_layer, post_layer) in enumerate(zip(pre_layers, post_layers)):
        pre_shapes = {n: tuple(p.shape) for n, p in pre_layer.named_parameters()}
        post_shapes = {n: tuple(p.shape) for n, p in post_layer.named_parameters()}
        for name in sorted(pre_shapes.keys() ^ post_shapes.keys()):
            side = "pre-trained" if name in pre_shapes else "post-trained"
            problems.append(f"layer {layer_idx}: '{name}' exists only in the {side} model")
        for name in sorted(pre_shapes.keys() & post_shapes.keys()):
            if pre_shapes[name] != post_shapes[name]:
                problems.append(
                    f"layer {layer_idx}: '{name}' has shape {pre_shapes[name]} (pre-trained) "
                    f"vs {post_shapes[name]} (post-trained)"
                )
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise IncompatibleModelsError(f"The models' decoder layers differ: {shown}.")
    if pre_tokenizer is not None and post_tokenizer is not None:
        check_same_vocabulary(pre_tokenizer, post_tokenizer)


def _hidden_size(model: nn.Module) -> int | None:
    return getattr(text_config(model), "hidden_size", None)


def _vocab_rows(model: nn.Module) -> int:
    # The embedding matrix itself: what a token id indexes (a config can lag a resize).
    return model.get_input_embeddings().weight.shape[0]


def check_same_vocabulary(pre_tokenizer, post_tokenizer) -> None:
    """Raise IncompatibleModelsError unless both tokenizers map every token to the same id.

    Chat templates may differ (base checkpoints often ship a generic one, or none): the pair formats
    every prompt with the post-trained template for both models, so only the token ids must agree.
    """
    pre_vocab, post_vocab = pre_tokenizer.get_vocab(), post_tokenizer.get_vocab()
    if pre_vocab == post_vocab:
        return
    if len(pre_vocab) != len(post_vocab):
        raise IncompatibleModelsError(
            f"Different tokenizers: the pre-trained one has {len(pre_vocab)} tokens, the post-trained "
            f"one {len(post_vocab)}. SLR needs both models to share one vocabulary."
        )
    for token, post_id in sorted(post_vocab.items(), key=lambda item: item[1]):
        pre_id = pre_vocab.get(token)
        if pre_id != post_id:
            pre_side = f"id {pre_id}" if pre_id is not None else "missing"
            raise IncompatibleModelsError(
                f"Different tokenizers: token {token!r} is {pre_side} in the pre-trained tokenizer and "
                f"id {post_id} in the post-trained one. SLR needs both models to share one vocabulary."
            )


def load_pair(pre: str, post: str, settings: Settings | None = None) -> ModelPair:
    """Load and check a pre/post pair; the tokenizer comes from the post-trained source."""
    settings = settings or Settings()
    pre_source, post_source = parse_source(pre), parse_source(post)
    for source in (post_source, pre_source):
        check_reachable(source)
    post_model, tokenizer = load_model(post_source, settings, post_placement(settings))
    describe(post_model)  # fail early, before loading the second model
    # Module for module where the post-trained model is, so a restored layer sits where it replaces.
    pre_model, pre_tokenizer = load_model(pre_source, settings, pre_placement(post_model, settings))
    check_compatible(pre_model, post_model, pre_tokenizer, tokenizer)
    from .chat import ensure_chat_template

    ensure_chat_template(tokenizer, post_model.config.model_type)
    pair = ModelPair(pre_model, post_model, tokenizer, pre_source, post_source, settings)
    pair.pre_fingerprint, pair.post_fingerprint = fingerprint(pre_source), fingerprint(post_source)
    pair.label = _label(pre_source, post_source)
    return pair


def _label(pre: Source, post: Source) -> str:
    if pre.kind == post.kind == "demo":
        from .demo import DEMO_LABEL

        return DEMO_LABEL
    return f"{pre.spec} (pre-trained) / {post.spec} (post-trained)"


def load_tokenizer(spec: str, trust_remote_code: bool = False) -> object:
    """The tokenizer of a source alone (no weights), with a chat template ensured."""
    from transformers import AutoConfig, AutoTokenizer

    from .chat import ensure_chat_template

    source = parse_source(spec)
    if source.kind == "demo":
        from .demo import demo_base_dir

        location, extra = str(demo_base_dir()), {}
    elif source.kind == "gguf":
        location, extra = str(Path(source.location).parent), {"gguf_file": Path(source.location).name}
    else:
        location, extra = source.location, {"revision": source.revision} if source.revision else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code, **extra)
        config = AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code, **extra)
    except (OSError, ValueError) as error:
        raise SourceError(_load_message(source, error)) from error
    ensure_chat_template(tokenizer, config.model_type)
    return tokenizer
