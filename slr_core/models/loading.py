"""Loading models: one model from a source, a checked pre/post pair, or a tokenizer alone."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slr_core.errors import IncompatibleModelsError, SourceError
from slr_core.models import precision
from slr_core.models.architectures import decoder_layers, describe, text_config
from slr_core.models.building import BUILDING
from slr_core.models.device_maps import map_identity
from slr_core.models.hosting import HostedPolicy
from slr_core.models.load_errors import LOAD_ERRORS, load_message, missing_message, reading  # noqa: F401
from slr_core.models.placement import post_placement, pre_placement
from slr_core.models.settings import Settings, auto_cuda_compute
from slr_core.models.sources import Source, check_reachable, fingerprint, parse_source, pin, snapshot


def load_model(source: Source, settings: Settings, placement: dict | None = None) -> tuple[nn.Module, object]:
    """Load a causal LM and its tokenizer, its weights in the settings' weights dtype (load_pair then
    splits the compute dtype off: precision.split); `placement` (device_map, max_memory) overrides."""
    with BUILDING:  # one build at a time: transformers patches classes while it builds (models/building.py)
        return _load_model(source, settings, placement)


def _load_model(source: Source, settings: Settings, placement: dict | None) -> tuple[nn.Module, object]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dtype, device = settings.torch_weights_dtype, settings.torch_device
    if source.kind == "demo":
        from slr_core.models.demo import load_demo_model

        return load_demo_model(source.location, dtype, device)
    location, extra = source.location, {"trust_remote_code": settings.trust_remote_code}
    if source.kind == "gguf":
        location, extra["gguf_file"] = str(Path(location).parent), Path(location).name
    if source.hub_only:
        # Downloaded first by Hub id, with the source's token only (none for a visitor's choice), then
        # read offline: no library call (transformers' tokenizer lists repo files) can add a token.
        with reading(source, "files"):
            location = str(snapshot(source))
        extra.update(local_files_only=True, trust_remote_code=False)
    elif source.pinned_revision:
        extra["revision"] = source.pinned_revision
    if source.anonymous and not source.hub_only:
        extra["token"] = False  # a visitor's choice on a hosted server: never the operator's token
    if placement is None:
        placement = {"device_map": settings.device_map} if settings.device_map else {}
    # One part at a time, so a failure names the part: a bad config.json, a missing tokenizer, bad weights.
    with reading(source, "config"):
        AutoConfig.from_pretrained(location, **extra)
    with reading(source, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(location, **extra)
    with reading(source, "weights", settings):
        weights = {"use_safetensors": True} if source.hub_only else {}
        model, info = AutoModelForCausalLM.from_pretrained(
            location, dtype=dtype, output_loading_info=True, **weights, **extra, **placement
        )
        if "device_map" not in placement:
            model.to(device)
    if source.hub_only and info.get("missing_keys"):
        raise SourceError(missing_message(source, sorted(info["missing_keys"])))
    model.eval()
    return model, tokenizer


# ---------------------------------------------------------------- pairs


def weight_bytes(*models: nn.Module) -> int:
    """Bytes of the models' parameters and buffers, each storage counted once (tied or shared weights)."""
    seen, total = set(), 0
    for tensor in itertools.chain(*(itertools.chain(m.parameters(), m.buffers()) for m in models)):
        storage = tensor.untyped_storage()
        if tensor.device.type == "meta" or (tensor.device, storage.data_ptr()) in seen:
            continue
        seen.add((tensor.device, storage.data_ptr()))
        total += storage.nbytes()
    return total


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
        """The dtype the pair computes in."""
        return precision.compute_dtype(self.post)

    @property
    def weights_dtype(self) -> torch.dtype:
        """The dtype the pair keeps its weights in (narrower than `dtype` when split)."""
        return precision.weights_dtype(self.post)

    @property
    def precision(self) -> str:
        """'float32', or 'float32 on bfloat16 weights' when the weights are kept narrower."""
        compute, weights = (str(d).replace("torch.", "") for d in (self.dtype, self.weights_dtype))
        return compute if compute == weights else f"{compute} on {weights} weights"

    @property
    def attention(self) -> str:
        """The attention implementation the models run (eager, sdpa, ...); 'post/pre' if they differ."""
        kinds = [str(getattr(m.config, "_attn_implementation", None)) for m in (self.post, self.pre)]
        return kinds[0] if kinds[0] == kinds[1] else "/".join(kinds)

    @property
    def identity(self) -> str:
        """What about the pair determines its numbers: fingerprints, dtype, device type, attention, and
        the device map when one spreads the models (none: the key stays as it was without one).

        (torch, transformers and the sweep's code are keyed by cache.result_key, for every pair.)"""
        fields = [self.pre_fingerprint, self.post_fingerprint, str(self.dtype), self.device.type]
        if self.weights_dtype != self.dtype:  # kept narrower: its own context (unsplit keys unchanged)
            fields.append(f"weights={self.weights_dtype}")
        placement = map_identity(self.settings.device_map)
        return "|".join([*fields, f"attn={self.attention}", *([f"map={placement}"] if placement else [])])

    def provenance(self) -> dict:
        """What identifies the pair's numbers, for sidecar files: sources, fingerprints, dtype, versions."""
        import transformers

        return {
            "pair": self.label,
            "pre": self.pre_source.spec,
            "post": self.post_source.spec,
            "pre_fingerprint": self.pre_fingerprint,
            "post_fingerprint": self.post_fingerprint,
            "dtype": str(self.dtype).replace("torch.", ""),
            "weights_dtype": str(self.weights_dtype).replace("torch.", ""),
            # Marked, so no reader takes its numbers for float32 ones (they carry that dtype's rounding).
            "half_precision": self.dtype in (torch.bfloat16, torch.float16),
            "device": self.device.type,
            "attention": self.attention,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
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


def load_pair(
    pre: str,
    post: str,
    settings: Settings | None = None,
    policy: HostedPolicy | None = None,
    reserve: Callable[[int], None] | None = None,
) -> ModelPair:
    """Load and check a pre/post pair; the tokenizer comes from the post-trained source.

    `policy` (default: open) decides which sources may load, their size cap and Hub token; `reserve`
    is told the bytes the weights will take (estimated_bytes) after the checks, before any weights load,
    and may refuse by raising (the app's registry reserves its memory budget so)."""
    settings, policy = settings or Settings(), policy or HostedPolicy()
    pre_source, post_source = policy.source(pre), policy.source(post)
    if pre_source == post_source and policy.hosted:
        raise SourceError(
            f"The pre-trained and post-trained sources are the same ('{pre}'): every hybrid would equal "
            "the model itself. Give the base model and its post-trained counterpart."
        )
    checked, counts = [], []
    for source in (post_source, pre_source):
        check_reachable(source)
        # The commit first, resolved once: what the size check counts, both loads download and the
        # fingerprints name, even if a branch moves in between.
        source = pinned(source)
        with reading(source, "safetensors metadata"):  # from the Hub's metadata, before any weights download
            counts.append(policy.check_size(source))
        checked.append(source)
    post_source, pre_source = checked
    if reserve is not None:
        reserve(sum(estimated_bytes(s, c, settings) for s, c in zip(checked, counts)))
    post_model, tokenizer = load_model(post_source, settings, post_placement(settings))
    describe(post_model)  # fail early, before loading the second model
    # Module for module where the post-trained model is, so a restored layer sits where it replaces.
    pre_model, pre_tokenizer = load_model(pre_source, settings, pre_placement(post_model, settings))
    check_compatible(pre_model, post_model, pre_tokenizer, tokenizer)
    compute = _compute_dtype(settings, post_model)
    for model in (post_model, pre_model):
        precision.split(model, settings.torch_weights_dtype, compute)
    from slr_core.models.chat import ensure_chat_template

    ensure_chat_template(tokenizer, post_model.config.model_type)
    pair = ModelPair(pre_model, post_model, tokenizer, pre_source, post_source, settings)
    pair.pre_fingerprint, pair.post_fingerprint = fingerprint(pre_source), fingerprint(post_source)
    pair.label = _label(pre_source, post_source)
    return pair


def _compute_dtype(settings: Settings, model: nn.Module) -> torch.dtype:
    # auto on CUDA: float32 compute where it fits beside both models' weights, else bfloat16.
    chosen = settings.torch_dtype
    if settings.auto_compute:
        device = model.get_input_embeddings().weight.device
        largest = max(sum(p.numel() for p in unit.parameters()) for unit in precision.units(model))
        chosen = auto_cuda_compute(torch.cuda.mem_get_info(device)[0], largest)
    weights = settings.torch_weights_dtype  # never narrower than the weights (e.g. an explicit float32)
    return chosen if chosen.itemsize >= weights.itemsize else weights


def estimated_bytes(source: Source, count: int | None, settings: Settings) -> int:
    """About how many bytes a model's weights take once loaded: its parameter count (when the size check
    gave one) in the settings' dtype, else its local weight files' size; 0 when neither is known."""
    if count is not None:
        return count * settings.torch_weights_dtype.itemsize
    path = Path(source.location)
    if source.kind == "gguf":
        return path.stat().st_size
    if source.kind == "folder":
        files = [*path.glob("*.safetensors")] or [*path.glob("*.bin")]
        return sum(file.stat().st_size for file in files)
    return 0


def pinned(source: Source) -> Source:
    """The source with its Hub commit resolved (sources.pin), a failure told as a SourceError."""
    with reading(source, "config"):
        return pin(source)


def _label(pre: Source, post: Source) -> str:
    if pre.kind == post.kind == "demo":
        from slr_core.models.demo import pair_label

        return pair_label(pre.location, post.location)
    return f"{pre.spec} (pre-trained) / {post.spec} (post-trained)"


def load_tokenizer(spec: str, trust_remote_code: bool = False) -> object:
    """The tokenizer of a source alone (no weights), with a chat template ensured."""
    from transformers import AutoConfig, AutoTokenizer

    from slr_core.models.chat import ensure_chat_template

    source = parse_source(spec)
    if source.kind == "demo":
        from slr_core.models.demo import demo_base_dir

        location, extra = str(demo_base_dir()), {}
    elif source.kind == "gguf":
        location, extra = str(Path(source.location).parent), {"gguf_file": Path(source.location).name}
    else:
        location, extra = source.location, {"revision": source.revision} if source.revision else {}
    with reading(source, "config"):
        config = AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code, **extra)
    with reading(source, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code, **extra)
    ensure_chat_template(tokenizer, config.model_type)
    return tokenizer
